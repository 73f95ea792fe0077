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
from typing import Callable, NamedTuple, Sequence

import numpy as np

from dhs_core.errors import DhsError, UserError

#: reasons a cutout is excluded, as written to data_report.json
#: (``checksum``: the bytes read differ from the checksum stored with them — a shard index's
#: CRC-32, an npz member's zip CRC-32, a FITS DATASUM)
REASONS = ("missing", "truncated", "unreadable", "non_finite", "wrong_shape", "outside_root", "checksum")
BANDS = ("g", "r", "z")
#: ``view(block, code)``: a same-shape view of a cutout or block of cutouts (e.g. a dihedral transform)
ViewFn = Callable[[np.ndarray, int], np.ndarray]
#: ``alloc(shape)``: a writable float32 array to fill (e.g. backed by shared memory)
AllocFn = Callable[[tuple[int, ...]], np.ndarray]


class CutoutError(DhsError):
    """A cutout cannot be used; ``reason`` is one of :data:`REASONS`; ``path`` is the file it was
    read from (a shard, an npz or FITS file) when known."""

    def __init__(self, key: str, reason: str, detail: str = "", *, path: str | os.PathLike[str] | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown cutout error reason {reason!r}")
        self.key, self.reason, self.detail = key, reason, detail
        self.path = None if path is None else str(path)
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


def gather(
    get: Callable[[str], np.ndarray],
    keys: Sequence[str],
    *,
    codes: Sequence[int] | np.ndarray | None = None,
    view: ViewFn | None = None,
    alloc: AllocFn | None = None,
) -> np.ndarray:
    """``(N, 3, H, W)`` float32 batch of ``keys`` read one by one with ``get`` (the generic ``get_many``).

    ``view(cutout, codes[j])`` (e.g. a dihedral transform) is applied on the way into the batch,
    so it costs no extra copy; ``alloc(shape)`` provides the output (e.g. in shared memory).
    Every cutout must have the same shape, else :class:`CutoutError` ``wrong_shape``.
    """
    alloc = alloc or _empty
    out: np.ndarray | None = None
    for j, key in enumerate(keys):
        cutout = get(key)
        if out is None:
            out = alloc((len(keys), *cutout.shape))
        elif cutout.shape != out.shape[1:]:
            raise CutoutError(key, "wrong_shape", f"shape {cutout.shape}; the other cutouts of this batch are "
                                                  f"{out.shape[1:]} (a store holds one stamp size)")
        out[j] = cutout if view is None else view(cutout, int(codes[j]))  # type: ignore[index]
    return out if out is not None else alloc((0, len(BANDS), 0, 0))


#: the status :func:`read_readable` gives a cutout that was read
READABLE = "ok"


class Readable(NamedTuple):
    """What :func:`read_readable` read: ``images`` (M, 3, H, W) holds the readable cutouts in key
    order (None when none was), ``ok`` (N,) bool says which keys they are, and ``status`` (N,) is
    :data:`READABLE` or the reason, per key."""

    images: np.ndarray | None
    ok: np.ndarray
    status: np.ndarray


def read_readable(store, keys: Sequence[str]) -> Readable:
    """Read ``keys`` from ``store`` keeping the readable cutouts and each other key's reason.

    One batched ``get_many`` first (the fast path of packed shards); only a batch holding a bad
    cutout is re-read one key at a time to find which. A cutout whose shape differs from the
    first readable one is ``wrong_shape``. Nothing unreadable is ever replaced by zeros: callers
    drop the keys that are not ``ok`` and count them by reason.
    """
    keys = list(keys)
    try:
        return Readable(store.get_many(keys), np.ones(len(keys), bool), np.full(len(keys), READABLE, dtype=object))
    except CutoutError:
        arrays: list[np.ndarray] = []
        status = np.empty(len(keys), dtype=object)
        for j, key in enumerate(keys):
            try:
                cutout = store.get(key)
                if arrays and cutout.shape != arrays[0].shape:
                    raise CutoutError(key, "wrong_shape", f"shape {cutout.shape}; the first readable cutout of the "
                                                          f"batch is {arrays[0].shape}")
                arrays.append(cutout)
                status[j] = READABLE
            except CutoutError as exc:  # a PathEscapeError too: reported as outside_root, never read
                status[j] = exc.reason
        return Readable(np.stack(arrays) if arrays else None, status == READABLE, status)


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)


class PerFileStore:
    """Shared part of the one-file-per-cutout stores (``npz``, ``fits``): keys are paths below
    ``root`` (escapes refused by :func:`cutout_path`), and a batch is read one file at a time.
    Subclasses set ``format`` and implement ``get``."""

    format = ""

    def __init__(self, root: str | Path, stamp: int | None = None) -> None:
        self.root = Path(root)
        self.stamp = stamp

    def path(self, key: str) -> Path:
        return cutout_path(self.root, key)

    def get(self, key: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_many(self, keys: Sequence[str], *, codes: Sequence[int] | np.ndarray | None = None,
                 view: ViewFn | None = None, alloc: AllocFn | None = None) -> np.ndarray:
        """``(N, 3, H, W)`` batch of ``keys``, one file at a time (see :func:`gather`)."""
        return gather(self.get, keys, codes=codes, view=view, alloc=alloc)
