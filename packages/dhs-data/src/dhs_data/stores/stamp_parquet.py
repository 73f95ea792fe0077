"""``stamp_parquet`` store: the earlier pipeline's cutout tables (one row per cutout, the stamp as
the bytes of an ``.npz`` archive in a binary column, manifest columns beside it).

Layout read: a parquet file or a directory of them, optionally partitioned hive-style by split
(``split=train/part-0.parquet``, ``region_split=val/...``). The stamp column (``stamp_npz`` by
default) holds ``np.savez(_compressed)`` bytes in the layout of the ``npz`` store
(:func:`~dhs_data.stores.npz.read_npz_cutout`): one ``(3, H, W)`` (or channel-last ``(H, W, 3)``)
array under any name (``cutout`` when there are several), or one ``(H, W)`` plane per band named
``image_g``, ``image_r``, ``image_z``. A cutout is found by its id column (``galaxy_id``); opening
reads only that column, row groups are read on demand (only the stamp column) and the last few
are kept, so reading a table in order costs one parquet read per row group.

Decoding failures are :class:`~dhs_data.stores.base.CutoutError` with the usual reasons
(``missing`` for a null stamp or an unknown id, ``unreadable`` for bytes that are not an npz
archive or lack the arrays, ``checksum`` / ``truncated`` for a damaged archive, ``wrong_shape``,
``non_finite``), so the data stage and ``dhs data import`` exclude and count them like any
other cutout. An id on several rows names no single cutout: reading it is ``unreadable``.
"""

from __future__ import annotations

import io as _io
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from dhs_core.errors import UserError
from dhs_data.stores.base import AllocFn, CutoutError, ViewFn, gather
from dhs_data.stores.npz import read_npz_cutout

STAMP_COLUMN = "stamp_npz"
ID_COLUMN = "galaxy_id"
#: row groups whose stamp bytes are kept in memory, least recently used dropped first
CACHE_GROUPS = 4


def parquet_files(root: str | Path) -> list[Path]:
    """The parquet files of a dataset (one file, or every ``*.parquet`` below a directory, sorted)."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


def partition_values(path: Path, root: Path) -> dict[str, str]:
    """Hive partition keys of ``path`` below ``root`` (``split=train/...`` -> {"split": "train"}); when
    ``root`` is the file itself, those of the directories it sits in."""
    dirs = path.relative_to(root).parts[:-1] if root.is_dir() else path.resolve().parent.parts
    out = {}
    for part in dirs:
        if "=" in part:
            key, value = part.split("=", 1)
            out[key] = value
    return out


class StampParquetStore:
    """Reader of a ``stamp_parquet`` dataset rooted at ``root`` (a file or a directory).

    ``files`` are its parquet files, ``ids[f]`` the id of every row of ``files[f]`` in order (None
    where null), ``repeated`` the ids found on more than one row with their row count.
    """

    format = "stamp_parquet"

    def __init__(self, root: str | Path, stamp: int | None = None, *, stamp_column: str = STAMP_COLUMN,
                 id_column: str = ID_COLUMN) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root, self.stamp = Path(root), stamp
        self.stamp_column, self.id_column = stamp_column, id_column
        if not self.root.exists():
            raise UserError(f"{self.root} does not exist (a stamp_parquet store is a parquet file or a directory of "
                            "them)")
        self.files = parquet_files(self.root)
        if not self.files:
            raise UserError(f"{self.root}: no parquet files (a stamp_parquet store is a parquet file or a directory "
                            "of them)")
        self.ids: list[list[str | None]] = []
        self._group_starts: list[np.ndarray] = []
        self._where: dict[str, tuple[int, int]] = {}  # id -> (file, row in file)
        self.repeated: dict[str, int] = {}
        for fi, path in enumerate(self.files):
            try:
                meta = pq.ParquetFile(path)
            except Exception as exc:  # pyarrow raises several types for a file that is not parquet
                raise UserError(f"{path} is not a readable parquet file: {exc}") from exc
            schema = meta.schema_arrow
            for column, what, option in ((stamp_column, "stamp", "--stamp-column"), (id_column, "id", "--id-column")):
                if column not in schema.names:
                    raise UserError(f"{path}: no {what} column {column!r} (columns: {', '.join(schema.names)}); name "
                                    f"the {what} column with {option}")
            kind = schema.field(stamp_column).type
            if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
                raise UserError(f"{path}: column {stamp_column!r} has type {kind}; the stamps are binary .npz bytes "
                                "(name the right column with --stamp-column)")
            sizes = [meta.metadata.row_group(g).num_rows for g in range(meta.num_row_groups)]
            self._group_starts.append(np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))
            ids = [None if v is None else str(v) for v in meta.read(columns=[id_column]).column(0).to_pylist()]
            self.ids.append(ids)
            for row, key in enumerate(ids):
                if key is None:
                    continue
                if key in self._where:
                    self.repeated[key] = self.repeated.get(key, 1) + 1
                else:
                    self._where[key] = (fi, row)
        self._cache: OrderedDict[tuple[int, int], list] = OrderedDict()

    def __getstate__(self) -> dict:
        # loader workers get the index, not the cached stamp bytes
        return {**self.__dict__, "_cache": OrderedDict()}

    def __len__(self) -> int:
        return len(self._where)

    def keys(self) -> list[str]:
        return list(self._where)

    def locate(self, key: str) -> tuple[Path, int] | None:
        """(file, row in file) of ``key`` (its first row when repeated), or None."""
        where = self._where.get(str(key))
        return None if where is None else (self.files[where[0]], where[1])

    def _stamps(self, fi: int, gi: int) -> list | Exception:
        """The stamp bytes of row group ``gi`` of file ``fi``, or the error reading them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        cached = self._cache.get((fi, gi))
        if cached is None:
            try:
                table = pq.ParquetFile(self.files[fi]).read_row_group(gi, columns=[self.stamp_column])
            except (pa.ArrowInvalid, OSError) as exc:
                # a damaged page (garbled header, bad compression) loses its rows, not the table: they
                # are excluded and counted like any unreadable cutout. An OSError with an errno is the
                # disk or the file system, not the file's bytes, and stops the reader.
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise
                return exc
            cached = table.column(0).to_pylist()
            self._cache[(fi, gi)] = cached
            while len(self._cache) > CACHE_GROUPS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end((fi, gi))
        return cached

    def get(self, key: str) -> np.ndarray:
        key = str(key)
        where = self._where.get(key)
        if where is None:
            raise CutoutError(key, "missing", f"no row with {self.id_column} = {key!r} in {self.root}")
        fi, row = where
        path = self.files[fi]
        if key in self.repeated:
            raise CutoutError(key, "unreadable", f"{self.repeated[key]} rows have {self.id_column} = {key!r}, so it "
                                                 "names no single stamp", path=path)
        starts = self._group_starts[fi]
        gi = int(np.searchsorted(starts, row, side="right")) - 1
        stamps = self._stamps(fi, gi)
        if isinstance(stamps, Exception):
            raise CutoutError(key, "unreadable", f"row group {gi} cannot be read: {stamps}", path=path)
        blob = stamps[row - int(starts[gi])]
        if blob is None:
            raise CutoutError(key, "missing", f"{self.stamp_column} is null in row {row}", path=path)
        return read_npz_cutout(key, _io.BytesIO(blob), self.stamp, path=path)

    def get_many(self, keys: Sequence[str], *, codes: Sequence[int] | np.ndarray | None = None,
                 view: ViewFn | None = None, alloc: AllocFn | None = None) -> np.ndarray:
        """``(N, 3, H, W)`` batch of ``keys`` (see :func:`~dhs_data.stores.base.gather`); keys in
        table order share the cached row groups."""
        return gather(self.get, keys, codes=codes, view=view, alloc=alloc)
