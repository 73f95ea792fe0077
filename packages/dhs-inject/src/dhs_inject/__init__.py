"""Dark Halo Scope injection: batched lensing engine, injection models, selection-function grid, synthetic survey."""

from dhs_inject.__about__ import __version__

__all__ = ["__version__"]
