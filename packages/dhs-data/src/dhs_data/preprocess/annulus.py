"""Annuli used to estimate sky level and noise around a galaxy.

Radii are in pixels from the stamp centre ``((H-1)/2, (W-1)/2)``; a pixel is in the annulus
when ``r_in <= r < r_out``. An annulus fits a stamp when ``r_out <= min(H, W) / 2`` (the
inscribed circle), so every angle is sampled and the estimate is not biased towards corners.

Presets: ``stamp64`` = (20, 32), the annulus used for 64-px stamps; ``stamp101`` = (32.5, 45),
used for 101-px stamps (about 8.5–12" from the centre, outside most LRG light).
``outer_20pct`` is the outer 20 % of the inscribed radius.
"""

from __future__ import annotations

import warnings

import numpy as np

from dhs_core.errors import SpecError

PRESETS: dict[str, tuple[float, float]] = {"stamp64": (20.0, 32.0), "stamp101": (32.5, 45.0)}
OUTER_FRACTIONS: dict[str, float] = {"outer_20pct": 0.2}
#: an inner radius below this fraction of the stamp sits inside typical host-galaxy light
HOST_LIGHT_FRACTION = 0.2
#: median absolute deviation -> Gaussian sigma: 1 / Phi^-1(3/4) = 1.482602..., rounded to the four
#: decimals the training data have always been normalised with (raw_robust); every robust noise
#: estimate in dhs uses this one value, so a MAD means the same sigma everywhere
MAD_TO_SIGMA = 1.4826


def annulus_radii(annulus: tuple[float, float] | str | None, shape: tuple[int, int], *,
                  outer_fraction: float | None = None) -> tuple[float, float]:
    """``(r_in, r_out)`` in pixels for a stamp of ``shape``; SpecError when it does not fit."""
    h, w = int(shape[-2]), int(shape[-1])
    r_max = min(h, w) / 2.0
    if isinstance(annulus, str):
        if annulus in PRESETS:
            annulus = PRESETS[annulus]
        elif annulus in OUTER_FRACTIONS:
            outer_fraction, annulus = OUTER_FRACTIONS[annulus], None
        else:
            raise SpecError(
                f"preprocess.annulus = {annulus!r} is not a preset; use [r_in, r_out] in pixels or one of "
                f"{', '.join([*PRESETS, *OUTER_FRACTIONS])}"
            )
    if annulus is None:
        if outer_fraction is None or not 0 < outer_fraction < 1:
            raise SpecError(f"preprocess.outer_fraction = {outer_fraction!r} must be in (0, 1)")
        return r_max * (1.0 - outer_fraction), r_max
    r_in, r_out = float(annulus[0]), float(annulus[1])
    if not 0 <= r_in < r_out:
        raise SpecError(f"preprocess.annulus = [{r_in:g}, {r_out:g}]: need 0 <= r_in < r_out (pixels)")
    if r_out > r_max:
        raise SpecError(
            f"preprocess.annulus = [{r_in:g}, {r_out:g}] does not fit a {h}x{w} stamp: r_out must be <= "
            f"{r_max:g} px (half the stamp); e.g. [20, 32] for 64 px or [32.5, 45] for 101 px"
        )
    if r_in < HOST_LIGHT_FRACTION * min(h, w):
        warnings.warn(
            f"preprocess.annulus inner radius {r_in:g} px is < {HOST_LIGHT_FRACTION:g} x the {min(h, w)}-px stamp: "
            "the sky estimate will include host-galaxy light and suppress the arcs' contrast",
            UserWarning,
            stacklevel=3,
        )
    return r_in, r_out


def annulus_mask(shape: tuple[int, int], r_in: float, r_out: float) -> np.ndarray:
    h, w = int(shape[-2]), int(shape[-1])
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(y - (h - 1) / 2.0, x - (w - 1) / 2.0)
    return (r >= r_in) & (r < r_out)


def annulus_stats(cutouts: np.ndarray, r_in: float, r_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-band median and MAD (unscaled) in the annulus; shapes ``(..., C)``."""
    x = np.asarray(cutouts, dtype=np.float32)
    ring = x[..., annulus_mask(x.shape[-2:], r_in, r_out)]
    median = np.median(ring, axis=-1)
    mad = np.median(np.abs(ring - median[..., None]), axis=-1)
    return median, mad
