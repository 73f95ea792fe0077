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

import io as io_bytes
import os
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io
from dhs_core.errors import DataIntegrityError
from dhs_data.layout import SHARD_INDEX as INDEX
from dhs_data.stores.base import AllocFn, CutoutError, ViewFn, check_cutout

#: when a ShardStore checks a cutout's CRC-32: the first time this process reads it, every time, or
#: only when asked (``ShardStore.verify``, ``dhs data verify``)
VERIFY_MODES = ("first-read", "always", "never")
#: cutouts verified in this process, per store (root, index size, mtime, inode): shared by every
#: reader of the same store, so the train and score readers of one run do not check the pages a
#: dataset verified when it was opened again; loader workers inherit it with the pickled store
_VERIFIED: dict[tuple, np.ndarray] = {}

#: cutouts per copy in ShardStore.get_many (8 x 101 px x 3 bands x 4 B = 1 MB, about an L2 cache)
_CHUNK = 8


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


class ShardWriter:
    """Stream cutouts into shards of ``shard_size``; call :meth:`close` (or use ``with``).

    Each shard is written with plain buffered file I/O: the ``.npy`` header first, then one
    cutout after another, so writing never holds more than the cutout being added in memory.
    Not through a writable memory map: a mapped file grows sparse, and when the disk fills up
    the kernel can only report the failed page write as SIGBUS, which kills the process with
    nothing cleaned up; ``write()`` raises ``OSError(ENOSPC)`` instead, which the data stage
    turns into a clear error and removes its staging directory. numpy pads the header so that
    its first shape dimension can be rewritten in place (``numpy.lib.format``), which is how the
    last, shorter shard gets its exact row count without a copy.
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
        self._current: BinaryIO | None = None
        self._partial: Path | None = None
        self._header_len = 0
        self._n_in_current = 0
        self._n_shards = 0

    def _header(self, n: int) -> bytes:
        buf = io_bytes.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (n, 3, self.stamp, self.stamp)})
        return buf.getvalue()

    def _open_shard(self) -> None:
        self._partial = self.root / (shard_name(self._n_shards) + ".partial")
        header = self._header(self.shard_size)
        self._header_len = len(header)
        with _named(self._partial):
            self._current = open(self._partial, "wb")
            self._current.write(header)
        self._n_in_current = 0

    def _finish_shard(self) -> None:
        if self._current is None or self._partial is None:
            return
        fh, partial, n = self._current, self._partial, self._n_in_current
        final = self.root / shard_name(self._n_shards)
        with _named(partial):
            try:
                if n < self.shard_size:  # the last shard: its header states the rows it holds
                    header = self._header(n)
                    if len(header) != self._header_len:  # pragma: no cover - numpy pads for this
                        raise ValueError("npy header length changed with the row count")
                    fh.seek(0)
                    fh.write(header)
                fh.flush()
            finally:
                fh.close()
                self._current = None
        partial.replace(final)
        self._partial = None
        self._n_shards += 1

    def abort(self) -> None:
        """Close and delete the shard being written (after a failure); written shards stay."""
        if self._current is not None:
            try:
                self._current.close()
            except OSError:  # the buffered tail cannot be flushed either (the disk is still full)
                pass
            self._current = None
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
            self._partial = None

    def add(self, key: str, cutout: np.ndarray) -> None:
        if key in self._seen:
            raise ValueError(f"key {key!r} added twice")
        arr = check_cutout(key, np.asarray(cutout), self.stamp)
        if self._current is None:
            self._open_shard()
        assert self._current is not None
        data = np.ascontiguousarray(arr)
        with _named(self._partial):
            self._current.write(memoryview(data).cast("B"))
        self._keys.append(key)
        self._shard.append(self._n_shards)
        self._row.append(self._n_in_current)
        self._crc.append(zlib.crc32(data))
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
        with _named(self.root / INDEX), io.atomic_path(self.root / INDEX) as tmp:
            pq.write_table(index, tmp)
        return len(self._keys)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextmanager
def _named(path: Path | None) -> Iterator[None]:
    """Give an ``OSError`` raised while writing ``path`` that path, so a full disk (ENOSPC) or a
    device error (EIO) is reported with the file it hit."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and path is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


class ShardStore:
    """Reader of a ``shards`` store; picklable (maps are reopened lazily in each process).

    ``verify`` says when a cutout's bytes are checked against the CRC-32 the writer stored in
    the index (docs/data.md, "Integrity"): ``"first-read"`` (default) the first time this
    process reads the cutout — later reads of the same pages are trusted; ``"always"`` on every
    read; ``"never"`` only in :meth:`verify`. A mismatch raises :class:`CutoutError` with reason
    ``checksum``, so readers that exclude bad cutouts count it like any other. A missing or
    unreadable index is damage to the whole store: :class:`~dhs_core.errors.DataIntegrityError`.
    """

    format = "shards"
    max_open = 4

    def __init__(self, root: str | Path, stamp: int | None = None, *, verify: str = "first-read") -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify={verify!r}; expected one of {', '.join(VERIFY_MODES)}")
        self.root = Path(root)
        self.stamp = stamp
        self.verify_mode = verify
        index_path = self.root / INDEX
        if not index_path.is_file():
            raise DataIntegrityError(f"shard store {self.root}: its index {index_path} is missing; "
                                     f"check the store with `dhs data verify`")
        try:
            index = pq.read_table(index_path, columns=["key", "shard", "row", "crc32"])
            keys = index.column("key").to_pylist()
            self._shard = index.column("shard").to_numpy()
            self._row = index.column("row").to_numpy()
            self._crc = index.column("crc32").to_numpy()
        except (pa.ArrowException, OSError, KeyError, ValueError) as exc:
            raise DataIntegrityError(f"shard store {self.root}: its index {index_path} is unreadable "
                                     f"({type(exc).__name__}: {exc}); check the store with `dhs data verify`") from None
        self._pos = {k: i for i, k in enumerate(keys)}
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()
        self._last = -1
        st = index_path.stat()
        self._store_id = (str(self.root.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        self._verified = _VERIFIED.setdefault(self._store_id, np.zeros(len(keys), bool))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()  # memory maps are per process
        state["_last"] = -1
        return state

    def __setstate__(self, state: dict) -> None:
        # a loader worker inherits what its parent verified, and shares it with its own readers
        self.__dict__.update(state)
        known = _VERIFIED.get(self._store_id)
        if known is not None and known.shape == self._verified.shape and known is not self._verified:
            known |= self._verified
            self._verified = known
        else:
            _VERIFIED[self._store_id] = self._verified

    def __len__(self) -> int:
        return len(self._pos)

    def keys(self) -> list[str]:
        return list(self._pos)

    @property
    def n_shards(self) -> int:
        return int(self._shard.max()) + 1 if len(self._shard) else 0

    def _map(self, shard: int, key: str) -> np.ndarray:
        m = self._maps.get(shard)
        if m is not None:
            if shard != self._last:
                self._maps.move_to_end(shard)
                self._last = shard
            return m
        path = self.root / shard_name(shard)
        if not path.is_file():
            raise CutoutError(key, "missing", f"shard file {path} is missing", path=path)
        try:
            # a plain ndarray view of the np.memmap (which it keeps alive): np.memmap's per-index
            # subclass bookkeeping is measurable on the batched path
            m = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError) as exc:  # a short file cannot be mapped to its header's shape
            raise CutoutError(key, "truncated", f"shard {path.name}: {exc}", path=path) from exc
        self._maps[shard] = m
        self._last = shard
        while len(self._maps) > self.max_open:
            self._maps.popitem(last=False)  # dropping the last reference unmaps the file
        return m

    def _check_crc(self, key: str, i: int, raw: np.ndarray) -> None:
        """Compare the bytes of cutout ``i`` as read (``raw``, C-contiguous) with the index."""
        crc = zlib.crc32(raw)
        if crc != int(self._crc[i]):
            raise CutoutError(key, "checksum", f"CRC-32 {crc:08x} of the bytes read differs from {int(self._crc[i]):08x} "
                                               f"in {self.root / INDEX} (shard {shard_name(int(self._shard[i]))}, "
                                               f"row {int(self._row[i])})",
                              path=self.root / shard_name(int(self._shard[i])))
        self._verified[i] = True

    def get(self, key: str, *, verify: bool | None = None) -> np.ndarray:
        """The cutout ``key``; ``verify=True`` checks its CRC-32 whatever the store's ``verify`` mode."""
        i = self._pos.get(key)
        if i is None:
            raise CutoutError(key, "missing", "not in the shard index")
        m = self._map(int(self._shard[i]), key)
        row = int(self._row[i])
        if row >= m.shape[0]:
            raise CutoutError(key, "truncated", f"row {row} beyond shard length {m.shape[0]}")
        arr = np.array(m[row], dtype=np.float32)
        if verify or (verify is None and self._needs_check(i)):
            self._check_crc(key, i, arr)
        return check_cutout(key, arr, self.stamp)

    def _needs_check(self, i: int) -> bool:
        mode = self.verify_mode
        return mode == "always" or (mode == "first-read" and not self._verified[i])

    def verify(self, keys: Sequence[str] | None = None, *, recheck: bool = True,
               advance: Callable[[int], None] | None = None) -> list[CutoutError]:
        """Check the CRC-32 of ``keys`` (default: every cutout of the index); returns the damaged ones.

        Reads shard by shard with plain file reads (a few threads: ``zlib.crc32`` releases the
        GIL), so it costs one sequential pass over the bytes. A missing shard makes each of its
        cutouts ``missing``; rows past the end of a short shard are ``truncated``; a shard whose
        header does not describe ``(n, 3, H, W)`` float32 is ``wrong_shape``. With
        ``recheck=False`` cutouts this process already verified are skipped. ``advance(n)`` is
        called as cutouts are checked.
        """
        errors: list[CutoutError] = []
        if keys is None:
            pos = np.arange(len(self._pos), dtype=np.int64)
        else:
            found = [(k, self._pos.get(k)) for k in keys]
            errors += [CutoutError(k, "missing", "not in the shard index") for k, i in found if i is None]
            pos = np.unique(np.array([i for _, i in found if i is not None], np.int64))
        if not recheck:
            pos = pos[~self._verified[pos]]
        if advance is not None and len(errors):
            advance(len(errors))
        all_keys = list(self._pos)
        by_shard: dict[int, np.ndarray] = {}
        shards = self._shard[pos].astype(np.int64)
        order = np.argsort(shards, kind="stable")
        for s, group in _groups(shards[order], pos[order]):
            by_shard[s] = group
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for ok, bad in pool.map(lambda item: self._verify_shard(item[0], item[1], all_keys), by_shard.items()):
                self._verified[ok] = True
                errors += bad
                if advance is not None:
                    advance(len(ok) + len(bad))
        return errors

    def _verify_shard(self, shard: int, pos: np.ndarray, all_keys: Sequence[str]) -> tuple[np.ndarray, list[CutoutError]]:
        path = self.root / shard_name(shard)
        rows = self._row[pos].astype(np.int64)
        bad: list[CutoutError] = []
        if not path.is_file():
            return pos[:0], [CutoutError(all_keys[i], "missing", f"shard file {path} is missing", path=path)
                             for i in pos]
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                offset = fh.tell()
                size = os.fstat(fh.fileno()).st_size
                row_shape = tuple(shape[1:])
                if (len(shape) != 4 or fortran or dtype != np.dtype("<f4") or row_shape[0] != 3
                        or (self.stamp is not None and row_shape[1:] != (self.stamp, self.stamp))):
                    return pos[:0], [CutoutError(all_keys[i], "wrong_shape", f"shard {path.name} holds {shape} {dtype}",
                                                     path=path)
                                     for i in pos]
                row_bytes = int(np.prod(row_shape)) * 4
                available = min(int(shape[0]), (size - offset) // row_bytes)
                ok = np.zeros(len(pos), bool)
                buf = bytearray(row_bytes)
                for j in np.argsort(rows, kind="stable"):
                    i, row = int(pos[j]), int(rows[j])
                    if row >= available:
                        why = f"row {row} beyond the {available} complete row(s) of {path.name}"
                        bad.append(CutoutError(all_keys[i], "truncated", why, path=path))
                        continue
                    fh.seek(offset + row * row_bytes)
                    fh.readinto(buf)
                    crc = zlib.crc32(buf)
                    if crc == int(self._crc[i]):
                        ok[j] = True
                    else:
                        bad.append(CutoutError(all_keys[i], "checksum",
                                               f"CRC-32 {crc:08x} differs from {int(self._crc[i]):08x} in the index "
                                               f"({path.name}, row {row})", path=path))
        except (ValueError, OSError) as exc:  # an unreadable header, an I/O error
            return pos[:0], [CutoutError(all_keys[i], "unreadable", f"shard {path.name}: {exc}", path=path)
                             for i in pos]
        return pos[ok], bad

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
        # cutouts whose CRC-32 this read must check (none once a dataset verified its pages)
        mode = self.verify_mode
        check = (np.ones(n, bool) if mode == "always" else ~self._verified[pos] if mode == "first-read"
                 else np.zeros(n, bool))
        any_check = bool(check.any())
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
            if any_check:
                for j in np.flatnonzero(check[sel]).tolist():
                    self._check_crc(keys[int(sel[j])], int(pos[sel[j]]), block[j])
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


def _groups(labels: np.ndarray, values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(label, values) for each run of equal ``labels`` (sorted)."""
    starts = np.flatnonzero(np.diff(labels, prepend=-1)) if len(labels) else np.array([], np.int64)
    ends = np.append(starts[1:], len(labels))
    for a, b in zip(starts.tolist(), ends.tolist()):
        yield int(labels[a]), values[a:b]
