"""``raw_robust``: per-band robust standardisation against the sky annulus.

``(x - median) / (MAD_TO_SIGMA * MAD + eps)`` with median and MAD taken in an annulus around the
galaxy, clipped to ±clip. 1.4826·MAD (:data:`dhs_data.preprocess.annulus.MAD_TO_SIGMA`) is the
Gaussian-consistent sigma, so sky noise becomes
unit variance while the arcs keep their contrast; the clip stops bright stars dominating.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from pydantic import Field, field_validator

from dhs_core import ComponentConfig
from dhs_data.preprocess.annulus import MAD_TO_SIGMA, OUTER_FRACTIONS, PRESETS, annulus_radii, annulus_stats


def raw_robust(cutout: np.ndarray, *, annulus: tuple[float, float] | str = (20, 32), clip: float = 10.0,
               outer_fraction: float | None = None, eps: float = 1e-6) -> np.ndarray:
    """Normalise a float32 ``(3,H,W)`` or ``(N,3,H,W)`` cutout (see module docstring)."""
    x = np.asarray(cutout, dtype=np.float32)
    r_in, r_out = annulus_radii(None if outer_fraction is not None else annulus, x.shape[-2:],
                                outer_fraction=outer_fraction)
    median, mad = annulus_stats(x, r_in, r_out)
    scale = MAD_TO_SIGMA * mad + eps
    out = (x - median[..., None, None]) / scale[..., None, None]
    return np.clip(out, -clip, clip).astype(np.float32)


class RawRobustConfig(ComponentConfig):
    """Options of ``raw_robust``."""

    # sky annulus: [r_in, r_out] in pixels, or a preset: stamp64 = [20, 32], stamp101 = [32.5, 45],
    # outer_20pct (outer 20 % of the inscribed radius)
    annulus: tuple[float, float] | str = (20.0, 32.0)
    # alternative to annulus: the outer fraction of the inscribed radius used as the annulus
    outer_fraction: float | None = Field(default=None, gt=0, lt=1)
    # clip the normalised pixels to [-clip, clip] (in sky sigmas)
    clip: float = Field(default=10.0, gt=0)
    # added to the robust sigma so a flat (zero-MAD) annulus does not divide by zero
    eps: float = Field(default=1e-6, gt=0)

    @field_validator("annulus")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | str) -> tuple[float, float] | str:
        # checked when the spec is validated, before a run writes anything (whether it fits the
        # stamp is checked by the data stage, which knows the stamp)
        if isinstance(value, str):
            if value not in PRESETS and value not in OUTER_FRACTIONS:
                raise ValueError(f"{value!r} is not a preset; use [r_in, r_out] in pixels or one of "
                                 f"{', '.join([*PRESETS, *OUTER_FRACTIONS])}")
            return value
        r_in, r_out = value
        if not (math.isfinite(r_in) and math.isfinite(r_out) and 0 <= r_in < r_out):
            raise ValueError(f"[{r_in}, {r_out}]: need finite radii in pixels with 0 <= r_in < r_out")
        return value


def build_raw_robust(config: RawRobustConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Per-band (x - median) / (MAD_TO_SIGMA x MAD) from a sky annulus, clipped."""

    def apply(cutout: np.ndarray) -> np.ndarray:
        return raw_robust(cutout, annulus=config.annulus, clip=config.clip,
                          outer_fraction=config.outer_fraction, eps=config.eps)

    return apply
