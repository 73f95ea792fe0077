"""Dark Halo Scope models: architectures, losses, trainer, train stage."""

from dhs_models.__about__ import __version__
from dhs_models.build import build_model

__all__ = ["__version__", "build_model"]
