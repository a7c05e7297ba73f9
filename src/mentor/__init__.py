"""mentor: multimodal recommendation (MENTOR, AAAI 2025) and its baselines, trained and served."""

__version__ = "0.1.0"
