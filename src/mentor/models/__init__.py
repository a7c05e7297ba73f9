"""Recommendation models; each registers itself in :mod:`mentor.registry`."""
