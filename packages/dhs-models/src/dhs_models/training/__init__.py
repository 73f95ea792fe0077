"""The trainer: optimisation protocol, checkpoints, resume, validation metrics."""
