"""Preprocessors: ``impl(config)`` returns a callable on float32 (3,H,W) or (N,3,H,W)."""

from dhs_data.preprocess.annulus import PRESETS, annulus_mask, annulus_radii, annulus_stats
from dhs_data.preprocess.annulus_comparison import annulus_comparison
from dhs_data.preprocess.center_crop import CenterCropConfig, build_center_crop, center_crop
from dhs_data.preprocess.raw_robust import RawRobustConfig, build_raw_robust, raw_robust

__all__ = [
    "PRESETS", "CenterCropConfig", "RawRobustConfig", "annulus_comparison", "annulus_mask", "annulus_radii",
    "annulus_stats", "build_center_crop", "build_raw_robust", "center_crop", "raw_robust",
]
