"""Diagnostics evaluators that need the trained network: feature-space separation and arc morphology."""
