"""5-sigma point-source depth in AB mag <-> psfdepth, the inverse variance of a PSF-weighted flux.

The Legacy Surveys give the depth of a cutout as ``psfdepth`` (1/nanomaggy^2): the 1-sigma flux
error of a point source is ``1/sqrt(psfdepth)`` nanomaggy, so the flux detected at 5 sigma is
``5/sqrt(psfdepth)`` and, with the nanomaggy zero point 22.5,
``m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth))``. Both directions live here, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def m5_to_psfdepth(m5: Any) -> np.ndarray:
    """5-sigma point-source depth (AB mag) -> psfdepth, the inverse variance in 1/nanomaggy^2."""
    flux_5sigma = 10 ** ((22.5 - np.asarray(m5, dtype=float)) / 2.5)
    return (5.0 / flux_5sigma) ** 2


def psfdepth_to_m5(psfdepth: Any) -> np.ndarray:
    """5-sigma point-source depth (AB mag) from inverse variance; NaN where psfdepth <= 0."""
    d = np.asarray(psfdepth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, 22.5 - 2.5 * np.log10(5.0 / np.sqrt(d)), np.nan)
