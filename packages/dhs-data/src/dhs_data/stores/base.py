"""What every cutout store shares: the typed read error, path containment and pixel checks.

A store maps a manifest ``cutout_path`` (a key relative to the store root) to a float32
``(3, H, W)`` array of g, r, z nanomaggies. Anything else — a missing or truncated file, an
unreadable one, the wrong number of planes, a NaN pixel — raises :class:`CutoutError` with a
machine-readable ``reason``, so the data stage can exclude and count it. A cutout is never
replaced by zeros: a zero stamp scores like a blank sky and silently biases completeness.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dhs_core.errors import DhsError, UserError

#: reasons a cutout is excluded, as written to data_report.json
REASONS = ("missing", "truncated", "unreadable", "non_finite", "wrong_shape", "outside_root")
BANDS = ("g", "r", "z")


class CutoutError(DhsError):
    """A cutout cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, key: str, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown cutout error reason {reason!r}")
        self.key, self.reason, self.detail = key, reason, detail
        super().__init__(f"cutout {key!r}: {reason}" + (f" ({detail})" if detail else ""))


class PathEscapeError(CutoutError, UserError):
    """A ``cutout_path`` resolves outside the data root (absolute, ``..``, or a symlink out)."""

    def __init__(self, key: str, root: Path) -> None:
        CutoutError.__init__(self, key, "outside_root", f"resolves outside the data root {root}")


def cutout_path(root: str | os.PathLike[str], key: str) -> Path:
    """Resolve the manifest key ``key`` to a file under ``root``; refuse paths that escape it.

    Symlinks are followed before the check, so a link pointing outside the root is refused too.
    """
    base = Path(root).resolve()
    if not key or Path(key).is_absolute() or "\x00" in key:
        raise PathEscapeError(key, base)
    target = (base / key).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(key, base)
    return target


def check_cutout(key: str, array: np.ndarray, stamp: int | None = None) -> np.ndarray:
    """Return ``array`` as float32 ``(3, H, W)`` or raise :class:`CutoutError`."""
    if array.ndim != 3 or array.shape[0] != len(BANDS):
        raise CutoutError(key, "wrong_shape", f"shape {array.shape}; expected (3, H, W) with planes g, r, z")
    if stamp is not None and array.shape[1:] != (stamp, stamp):
        raise CutoutError(key, "wrong_shape", f"shape {array.shape}; this store holds (3, {stamp}, {stamp})")
    out = np.asarray(array, dtype=np.float32)
    # a sum is NaN/inf when any pixel is (and cannot overflow for nanomaggy images): a fast
    # first test, with the exact pixel count only on failure
    if not np.isfinite(out.sum()):
        bad = int(np.size(out) - np.isfinite(out).sum())
        raise CutoutError(key, "non_finite", f"{bad} NaN/inf pixel(s)")
    return out
