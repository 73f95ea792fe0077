"""HEALPix train/val/test splits.

Neighbouring galaxies share sky systematics (PSF, depth, Galactic extinction, the same bright
star halo), so a random per-galaxy split leaks: the model can match a test galaxy to its
training neighbours. Splitting whole HEALPix pixels (nside 128 ≈ 0.46° across) keeps every
patch of sky in one split.

A pixel's split is a pure function of ``(seed, pixel)``: the first 8 bytes of
``sha256(f"{seed}:{pixel}")`` read big-endian and divided by 2**64 give ``u`` in [0, 1), and
``u`` is cut by the cumulative fractions in the order given (train, val, test). Adding galaxies
never moves existing ones between splits. Pixels use healpy's RING ordering.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from dhs_core import ComponentConfig
from dhs_core.errors import UserError


def check_nside(nside: int) -> int:
    if not isinstance(nside, (int, np.integer)) or nside < 1 or nside & (nside - 1) or nside > 2**29:
        raise UserError(f"split nside = {nside!r}: HEALPix nside must be a power of two (1, 2, 4, ..., 128, ...)")
    return int(nside)


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if not fractions:
        raise UserError("split fractions are empty; give e.g. {train = 0.7, val = 0.15, test = 0.15}")
    bad = {k: v for k, v in fractions.items() if not (0 < float(v) <= 1)}
    if bad:
        raise UserError(f"split fractions {bad} must each be in (0, 1]")
    total = float(sum(fractions.values()))
    if abs(total - 1.0) > 1e-6:
        raise UserError(
            f"split fractions {dict(fractions)} sum to {total:g}; they must sum to 1 "
            "(e.g. train/val/test = 0.7/0.15/0.15 or train/test = 0.7/0.3)"
        )
    return dict(fractions)


class SplitConfig(ComponentConfig):
    """How a data source's galaxies are split (every data-source config has ``split``)."""

    # "healpix": assign by HEALPix pixel hash; "manifest": keep the manifest's own split column
    # (it is still verified: no galaxy and no pixel in two splits)
    scheme: Literal["healpix", "manifest"] = "healpix"
    # HEALPix resolution of the split cells (power of two; 128 ≈ 0.46 deg pixels)
    nside: int = 128
    # seed of the pixel hash; changing it reshuffles which pixels go to which split
    seed: int = 42
    # split name -> fraction of pixels, in cut order; must sum to 1
    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    # allow a control (unlensed) and an injected positive built on the same galaxy; off by default
    # because a model then learns "extra flux" instead of arcs
    paired_controls: bool = False

    @field_validator("nside")
    @classmethod
    def _nside(cls, v: int) -> int:
        try:
            return check_nside(v)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        try:
            return check_fractions(v)
        except UserError as exc:
            raise ValueError(str(exc)) from None


def healpix_pixels(ra: np.ndarray, dec: np.ndarray, *, nside: int = 128) -> np.ndarray:
    """RING-ordered HEALPix pixel of each (ra, dec) in degrees."""
    import healpy as hp  # heavy (matplotlib); only when pixels are computed

    return hp.ang2pix(check_nside(nside), np.asarray(ra, float), np.asarray(dec, float), lonlat=True).astype(np.int64)


def pixel_uniform(pixels: np.ndarray, seed: int) -> np.ndarray:
    """The [0, 1) hash value of each pixel for ``seed``."""
    uniq, inverse = np.unique(np.asarray(pixels, np.int64), return_inverse=True)
    u = np.array(
        [int.from_bytes(hashlib.sha256(f"{int(seed)}:{int(p)}".encode()).digest()[:8], "big") / 2.0**64 for p in uniq]
    )
    return u[inverse].reshape(np.shape(pixels))


def assign_splits(
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    nside: int = 128,
    seed: int = 42,
    fractions: dict[str, float] | None = None,
) -> np.ndarray:
    """Split name of each galaxy (array of str), from its HEALPix pixel (module docstring)."""
    fractions = check_fractions({"train": 0.7, "val": 0.15, "test": 0.15} if fractions is None else fractions)
    u = pixel_uniform(healpix_pixels(ra, dec, nside=nside), seed)
    names = list(fractions)
    edges = np.cumsum([fractions[n] for n in names])
    edges[-1] = 1.0  # rounding must never leave a galaxy without a split
    which = np.searchsorted(edges, u, side="right")
    return np.asarray(names, dtype=object)[np.minimum(which, len(names) - 1)].astype(str)
