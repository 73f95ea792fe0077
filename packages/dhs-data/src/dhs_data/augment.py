"""Seeded dihedral augmentation of cutouts, per sample and batched.

A lens on a square pixel grid has the symmetries of the square: 4 rotations by 90° times an
optional flip (8 transforms). Each sample draws its transform from its own seed
(``dhs_core.seeds.sample_seed(seed, index, epoch, len(ds))``), so the result
depends only on (sample, epoch) — never on the worker that loads it or the batch it lands in.

The seed is mixed with the SplitMix64 finaliser (consecutive seeds give independent-looking
bits, and it is cheap enough to run per sample) and its low 4 bits form a *code*:
``k = code & 3`` quarter turns (as ``np.rot90`` over the last two axes), then a flip of the last
axis if bit 2 is set, then of the second-last axis if bit 3 is set. The scalar and the
vectorised versions below compute identical codes (tested), reduced to the 8 canonical
codes by :func:`canonical_code`, and both apply the transform with
:func:`dihedral_view`, so ``CutoutDataset.__getitems__`` reproduces ``__getitem__`` exactly.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

_M64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN, _C1, _C2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
#: number of distinct codes (4 rotations x 2 x 2 flips; hflip+vflip = rot180, so 8 transforms)
N_CODES = 16


def mix(seed: int) -> int:
    """SplitMix64 finaliser of one seed (a 64-bit int)."""
    z = (int(seed) + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def mix_array(seeds: Iterable[int] | np.ndarray) -> np.ndarray:
    """:func:`mix` of many seeds at once (uint64 arithmetic wraps modulo 2**64, as the scalar masks)."""
    z = np.asarray(seeds, dtype=np.int64).astype(np.uint64) + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


def canonical_code(code: int | np.ndarray) -> int | np.ndarray:
    """The code in 0..7 giving the same transform: a vertical flip is a half turn and a horizontal flip.

    (The half turn commutes with every element of the group.) Fewer distinct codes means fewer,
    larger groups on the batched path; the pixels are identical, as this is an exact identity.
    """
    k, hflip, vflip = code & 3, code >> 2 & 1, code >> 3 & 1
    return ((k + 2 * vflip) & 3) | ((hflip ^ vflip) << 2)


def dihedral_code(seed: int) -> int:
    """The transform code (canonical, 0..7) of one sample seed."""
    return int(canonical_code(mix(seed) & (N_CODES - 1)))


def dihedral_codes(seeds: Iterable[int] | np.ndarray) -> np.ndarray:
    """The transform codes (canonical, 0..7) of many sample seeds (int64 array)."""
    return canonical_code((mix_array(seeds) & np.uint64(N_CODES - 1)).astype(np.int64))


def dihedral_view(cutout: np.ndarray, code: int) -> np.ndarray:
    """A view of ``cutout`` (``(..., H, W)``, square) transformed by ``code``; no copy is made.

    ``code & 3`` quarter turns, exactly ``np.rot90(cutout, code & 3, axes=(-2, -1))`` (counter-
    clockwise when row 0 is at the top), written as transposes and reversed slices because
    ``np.rot90``'s own overhead showed up per group of a batch; then the flips.
    """
    k = code & 3
    if k == 1:
        cutout = cutout.swapaxes(-1, -2)[..., ::-1, :]
    elif k == 2:
        cutout = cutout[..., ::-1, ::-1]
    elif k == 3:
        cutout = cutout.swapaxes(-1, -2)[..., :, ::-1]
    if code >> 2 & 1:
        cutout = cutout[..., :, ::-1]
    if code >> 3 & 1:
        cutout = cutout[..., ::-1, :]
    return cutout


def augment_cutout(cutout: np.ndarray, seed: int) -> np.ndarray:
    """One of the 8 dihedral transforms of a ``(C, H, W)`` square cutout, chosen by ``seed``."""
    return np.ascontiguousarray(dihedral_view(cutout, dihedral_code(seed)))


def augment_batch(batch: np.ndarray, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Apply ``codes[j]`` to ``batch[j]`` for a ``(N, C, H, W)`` batch, one strided copy per code.

    ``out`` (same shape, may not alias ``batch``) receives the result; a new array otherwise.
    """
    if batch.shape[-1] != batch.shape[-2]:
        raise ValueError(f"dihedral augmentation needs square stamps; got {batch.shape[-2]}x{batch.shape[-1]}")
    if out is None:
        out = np.empty(batch.shape, np.float32)
    codes = np.asarray(codes)
    for code in np.unique(codes):
        pos = np.flatnonzero(codes == code)
        out[pos] = dihedral_view(batch[pos], int(code))
    return out
