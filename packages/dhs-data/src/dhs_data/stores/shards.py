"""``shards`` store: cutouts packed into memory-mapped ``.npy`` shards plus an index.

Layout under the store root::

    shard_00000.npy   float32 (n_0, 3, H, W)   plain .npy, so np.load(..., mmap_mode="r") works
    shard_00001.npy   ...
    index.parquet     key (manifest cutout_path), shard, row, crc32 (of the cutout's bytes)

Why ``.npy`` shards rather than Arrow: a cutout is one contiguous 3·H·W·4-byte block at a
computable offset, so a read is a page-cache copy with no per-file open, zip parsing or
decompression; ``benchmarks/bench_loader.py`` measures it against per-file npz. Readers map
at most :attr:`ShardStore.max_open` shards at a time (least recently used are unmapped), so
resident memory stays bounded however large the store is — nothing is loaded up front.

:meth:`ShardStore.get_many` is the fast path for a batch: the keys are grouped by shard (and by
the caller's per-sample transform code), each group is one fancy-index of the shard's memory map
written straight into the output batch through the transform's view — one copy per cutout, no
per-cutout Python work beyond an index lookup.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io
from dhs_data.layout import SHARD_INDEX as INDEX
from dhs_data.stores.base import AllocFn, CutoutError, ViewFn, check_cutout

#: cutouts per copy in ShardStore.get_many (8 x 101 px x 3 bands x 4 B = 1 MB, about an L2 cache)
_CHUNK = 8


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


class ShardWriter:
    """Stream cutouts into shards of ``shard_size``; call :meth:`close` (or use ``with``).

    Each shard is filled through a writable memory map, so writing never holds more than the
    cutout being added in memory.
    """

    def __init__(self, root: str | Path, stamp: int, *, shard_size: int = 1024) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stamp, self.shard_size = int(stamp), int(shard_size)
        self._keys: list[str] = []
        self._shard: list[int] = []
        self._row: list[int] = []
        self._crc: list[int] = []
        self._seen: set[str] = set()
        self._current: np.memmap | None = None
        self._n_in_current = 0
        self._n_shards = 0

    def _open_shard(self) -> None:
        path = self.root / (shard_name(self._n_shards) + ".partial")
        shape = (self.shard_size, 3, self.stamp, self.stamp)
        self._current = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        self._n_in_current = 0

    def _finish_shard(self) -> None:
        if self._current is None:
            return
        partial = Path(self._current.filename)
        final = self.root / shard_name(self._n_shards)
        n = self._n_in_current
        self._current.flush()
        if n == self.shard_size:
            del self._current
            partial.replace(final)
        else:  # the last shard: copy the filled rows into an exactly-sized file
            out = np.lib.format.open_memmap(final, mode="w+", dtype=np.float32, shape=(n, 3, self.stamp, self.stamp))
            for start in range(0, n, 256):
                out[start : start + 256] = self._current[start : min(n, start + 256)]
            out.flush()
            del out, self._current
            partial.unlink()
        self._current = None
        self._n_shards += 1

    def add(self, key: str, cutout: np.ndarray) -> None:
        if key in self._seen:
            raise ValueError(f"key {key!r} added twice")
        arr = check_cutout(key, np.asarray(cutout), self.stamp)
        if self._current is None:
            self._open_shard()
        assert self._current is not None
        self._current[self._n_in_current] = arr
        self._keys.append(key)
        self._shard.append(self._n_shards)
        self._row.append(self._n_in_current)
        self._crc.append(zlib.crc32(np.ascontiguousarray(arr).tobytes()))
        self._seen.add(key)
        self._n_in_current += 1
        if self._n_in_current == self.shard_size:
            self._finish_shard()

    def close(self) -> int:
        """Finish the last shard and write the index; returns the number of cutouts."""
        self._finish_shard()
        index = pa.table(
            {
                "key": pa.array(self._keys, pa.string()),
                "shard": pa.array(self._shard, pa.int32()),
                "row": pa.array(self._row, pa.int32()),
                "crc32": pa.array(self._crc, pa.uint32()),
            }
        )
        with io.atomic_path(self.root / INDEX) as tmp:
            pq.write_table(index, tmp)
        return len(self._keys)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()


class ShardStore:
    """Reader of a ``shards`` store; picklable (maps are reopened lazily in each process)."""

    format = "shards"
    max_open = 4

    def __init__(self, root: str | Path, stamp: int | None = None) -> None:
        self.root = Path(root)
        self.stamp = stamp
        index_path = self.root / INDEX
        if not index_path.is_file():
            raise CutoutError(str(index_path), "missing", f"shard store has no {INDEX}")
        index = pq.read_table(index_path)
        keys = index.column("key").to_pylist()
        self._shard = index.column("shard").to_numpy()
        self._row = index.column("row").to_numpy()
        self._crc = index.column("crc32").to_numpy()
        self._pos = {k: i for i, k in enumerate(keys)}
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()
        self._last = -1

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()  # memory maps are per process
        state["_last"] = -1
        return state

    def __len__(self) -> int:
        return len(self._pos)

    def keys(self) -> list[str]:
        return list(self._pos)

    def _map(self, shard: int, key: str) -> np.ndarray:
        m = self._maps.get(shard)
        if m is not None:
            if shard != self._last:
                self._maps.move_to_end(shard)
                self._last = shard
            return m
        path = self.root / shard_name(shard)
        if not path.is_file():
            raise CutoutError(key, "missing", f"shard file {path} is missing")
        try:
            # a plain ndarray view of the np.memmap (which it keeps alive): np.memmap's per-index
            # subclass bookkeeping is measurable on the batched path
            m = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError) as exc:  # a short file cannot be mapped to its header's shape
            raise CutoutError(key, "truncated", f"shard {path.name}: {exc}") from exc
        self._maps[shard] = m
        self._last = shard
        while len(self._maps) > self.max_open:
            self._maps.popitem(last=False)  # dropping the last reference unmaps the file
        return m

    def get(self, key: str, *, verify: bool = False) -> np.ndarray:
        i = self._pos.get(key)
        if i is None:
            raise CutoutError(key, "missing", "not in the shard index")
        m = self._map(int(self._shard[i]), key)
        row = int(self._row[i])
        if row >= m.shape[0]:
            raise CutoutError(key, "truncated", f"row {row} beyond shard length {m.shape[0]}")
        arr = np.array(m[row], dtype=np.float32)
        if verify and zlib.crc32(arr.tobytes()) != int(self._crc[i]):
            raise CutoutError(key, "unreadable", "checksum mismatch against the shard index")
        return check_cutout(key, arr, self.stamp)

    def get_many(self, keys: Sequence[str], *, codes: Sequence[int] | np.ndarray | None = None,
                 view: ViewFn | None = None, alloc: AllocFn | None = None) -> np.ndarray:
        """``(N, 3, H, W)`` float32 batch of ``keys``, in order; raises :class:`CutoutError` like :meth:`get`.

        ``view(block, code)`` is applied to each group of cutouts sharing ``codes[j]`` as they are
        copied out of the shard (``dhs_data.augment.dihedral_view``); ``alloc(shape)`` provides the
        output array (the dataset passes shared memory inside loader workers).
        """
        n = len(keys)
        try:
            pos = np.fromiter((self._pos[k] for k in keys), np.int64, n)
        except KeyError as exc:
            raise CutoutError(str(exc.args[0]), "missing", "not in the shard index") from None
        shard, row = self._shard[pos].astype(np.int64), self._row[pos].astype(np.int64)
        code = np.zeros(n, np.int64) if codes is None else np.asarray(codes, np.int64)
        # shard-major groups, so each shard is mapped once per batch however small max_open is
        group = shard * (int(code.max(initial=0)) + 1) + code
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.diff(group[order], prepend=-1))
        ends = np.append(starts[1:], n)
        out: np.ndarray | None = None
        # groups are cut into chunks of a few cutouts so the intermediate block stays in cache
        # between its copy out of the map and its copy into the batch (measured ~1.4x faster)
        bounds = [(a, min(a + _CHUNK, end)) for start, end in zip(starts.tolist(), ends.tolist())
                  for a in range(start, end, _CHUNK)]
        for start, end in bounds:
            sel = order[start:end]
            first = keys[int(sel[0])]
            m = self._map(int(shard[sel[0]]), first)
            rows = row[sel]
            if int(rows.max()) >= m.shape[0]:
                bad = int(sel[int(np.argmax(rows >= m.shape[0]))])
                raise CutoutError(keys[bad], "truncated", f"row {int(row[bad])} beyond shard length {m.shape[0]}")
            if out is None:
                shape = tuple(m.shape[1:])
                if len(shape) != 3 or shape[0] != 3 or (self.stamp is not None and shape[1:] != (self.stamp,) * 2):
                    raise CutoutError(first, "wrong_shape", f"shard holds {shape}; expected (3, {self.stamp}, {self.stamp})")
                out = (alloc or _empty)((n, *shape))
            elif tuple(m.shape[1:]) != out.shape[1:]:
                raise CutoutError(first, "wrong_shape", f"shard holds {tuple(m.shape[1:])}; others {out.shape[1:]}")
            block = m[rows]
            out[sel] = block if view is None else view(block, int(code[sel[0]]))
        if out is None:
            return (alloc or _empty)((0, 3, self.stamp or 0, self.stamp or 0))
        # the same finiteness test as check_cutout, one pass over the batch
        sums = out.reshape(n, -1).sum(axis=1)
        if not np.isfinite(sums).all():
            bad = int(np.flatnonzero(~np.isfinite(sums))[0])
            raise CutoutError(keys[bad], "non_finite", f"{int(out[bad].size - np.isfinite(out[bad]).sum())} NaN/inf pixel(s)")
        return out


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)
