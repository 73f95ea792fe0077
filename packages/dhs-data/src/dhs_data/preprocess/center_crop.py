"""``center_crop``: cut the central ``size`` x ``size`` pixels (e.g. 101 → 64).

The offset is ``(H - size) // 2``, so for odd-minus-even crops the extra pixel is dropped on
the high side and the galaxy centre stays within half a pixel of the crop centre.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from pydantic import Field

from dhs_core import ComponentConfig
from dhs_core.errors import SpecError


def center_crop(cutout: np.ndarray, size: int = 64) -> np.ndarray:
    x = np.asarray(cutout, dtype=np.float32)
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise SpecError(f"preprocess.size = {size} is larger than the {h}x{w} stamp; choose size <= {min(h, w)}")
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(x[..., top : top + size, left : left + size])


class CenterCropConfig(ComponentConfig):
    """Options of ``center_crop``."""

    # side of the square crop in pixels
    size: int = Field(default=64, ge=1)


def build_center_crop(config: CenterCropConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Central square crop (101 -> 64 px by default)."""

    def apply(cutout: np.ndarray) -> np.ndarray:
        return center_crop(cutout, config.size)

    return apply
