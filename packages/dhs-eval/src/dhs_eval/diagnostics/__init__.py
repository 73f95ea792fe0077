"""Diagnostics: statistics that explain a finder's behaviour rather than score it."""
