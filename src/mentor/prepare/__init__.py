"""Builders that turn public raw data sets into MMRec-layout data folders."""
