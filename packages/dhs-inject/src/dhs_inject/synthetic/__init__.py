"""The ``synthetic`` survey: a DR10-like embedded dataset rendered offline (catalog, cutouts, truth)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dhs_inject.synthetic.config import CONFUSER_CATEGORIES, SyntheticConfig

__all__ = ["CONFUSER_CATEGORIES", "SyntheticConfig", "build_catalog", "population_counts", "render_chunk"]

# the renderer and catalog load on first use, so importing the package (to register the data
# source, or for SyntheticConfig) imports no scipy or torch
_LAZY = {"build_catalog": "dhs_inject.synthetic.catalog", "population_counts": "dhs_inject.synthetic.catalog",
         "render_chunk": "dhs_inject.synthetic.render"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dhs_inject.synthetic' has no attribute {name!r}")
