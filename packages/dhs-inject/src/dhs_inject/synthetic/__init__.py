"""The ``synthetic`` survey: a DR10-like embedded dataset rendered offline (catalog, cutouts, truth)."""

from dhs_inject.synthetic.catalog import build_catalog, population_counts
from dhs_inject.synthetic.config import CONFUSER_CATEGORIES, SyntheticConfig
from dhs_inject.synthetic.render import render_chunk

__all__ = ["CONFUSER_CATEGORIES", "SyntheticConfig", "build_catalog", "population_counts", "render_chunk"]
