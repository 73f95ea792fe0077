"""Dark Halo Scope evaluation: metrics, statistics, strata, diagnostics, model cards."""

from dhs_eval.__about__ import __version__

__all__ = ["__version__"]
