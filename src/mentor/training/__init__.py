"""The one training loop shared by every model, with checkpoints and resume."""
