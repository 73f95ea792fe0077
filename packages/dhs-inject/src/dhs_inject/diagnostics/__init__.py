"""Injection-based diagnostics evaluators: does the trained finder see injected arcs as it sees
real lenses? (feature-space separation and arc morphology; the statistics are dhs-eval's)."""
