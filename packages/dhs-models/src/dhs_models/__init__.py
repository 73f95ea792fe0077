"""Dark Halo Scope models: architectures, losses, trainer, train stage."""

from dhs_models.__about__ import __version__

__all__ = ["__version__"]
