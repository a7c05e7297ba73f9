"""Data sets in MMRec layout: loading, validation, sampling and graphs."""
