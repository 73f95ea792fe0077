"""The ``evaluate`` and ``report`` pipeline stages of dhs-eval."""
