"""Dark Halo Scope models: architectures, losses, trainer, inference, train stage."""

from __future__ import annotations

from typing import Any

from dhs_models.__about__ import __version__

__all__ = ["__version__", "build_model"]


def __getattr__(name: str) -> Any:
    # build_model is resolved on first use, so importing dhs_models (e.g. to register its
    # plugins) does not import torch
    if name == "build_model":
        from dhs_models.build import build_model

        return build_model
    raise AttributeError(f"module 'dhs_models' has no attribute {name!r}")
