"""``stamp_parquet`` store: the earlier pipeline's cutout tables (one row per cutout, the stamp as
the bytes of an ``.npz`` archive in a binary column, manifest columns beside it).

Layout read: a parquet file or a directory of them, optionally partitioned hive-style by split
(``split=train/part-0.parquet``, ``region_split=val/...``). The stamp column (``stamp_npz`` by
default) holds ``np.savez(_compressed)`` bytes with either one ``(3, H, W)`` (or channel-last
``(H, W, 3)``) array under any name, or one ``(H, W)`` plane per band named ``image_g``,
``image_r``, ``image_z``. A cutout is found by its id column (``galaxy_id``); row groups are
read on demand (only the stamp and id columns) and a few are kept in memory, so opening a
million-row table reads only its id column.

Decoding failures are :class:`~dhs_data.stores.base.CutoutError` with the usual reasons
(``unreadable`` for bytes that are not an npz archive or lack the arrays, ``checksum`` /
``truncated`` for a damaged archive, ``wrong_shape``, ``non_finite``), so the data stage and
``dhs data import`` exclude and count them like any other cutout.
"""

from __future__ import annotations

import io as _io
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from dhs_data.stores.base import BANDS, CutoutError, check_cutout

STAMP_COLUMN = "stamp_npz"
ID_COLUMN = "galaxy_id"
#: row groups kept decoded-free in memory (their stamp bytes), most recently used last
CACHE_GROUPS = 4


def parquet_files(root: str | Path) -> list[Path]:
    """The parquet files of a dataset (one file, or every ``*.parquet`` below a directory, sorted)."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


def partition_values(path: Path, root: Path) -> dict[str, str]:
    """Hive partition keys of ``path`` below ``root`` (``split=train/...`` -> {"split": "train"})."""
    out = {}
    for part in path.relative_to(root).parts[:-1] if root.is_dir() else ():
        if "=" in part:
            key, value = part.split("=", 1)
            out[key] = value
    return out


def decode_stamp(key: str, blob: bytes | None, stamp: int | None = None) -> np.ndarray:
    """float32 (3, H, W) cutout from npz bytes, or CutoutError with the reason."""
    if blob is None:
        raise CutoutError(key, "missing", "the stamp column is null for this row")
    try:
        with np.load(_io.BytesIO(blob), allow_pickle=False) as npz:
            names = list(npz.files)
            if all(f"image_{b}" in names for b in BANDS):
                planes = [npz[f"image_{b}"] for b in BANDS]
                if any(p.ndim != 2 or p.shape != planes[0].shape for p in planes):
                    raise CutoutError(key, "wrong_shape", f"band planes of shapes {[p.shape for p in planes]}")
                arr = np.stack(planes)
            elif len(names) == 1 or "cutout" in names:
                arr = npz["cutout" if "cutout" in names else names[0]]
            else:
                raise CutoutError(key, "unreadable", f"arrays {names}; expected one (3, H, W) array or image_g/r/z")
    except CutoutError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        reason = "checksum" if "CRC-32" in str(exc) else "truncated"
        raise CutoutError(key, reason, f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # not an archive at all, zlib errors, pickled object arrays
        raise CutoutError(key, "unreadable", f"{type(exc).__name__}: {exc}") from exc
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.shape[0] != 3:
        arr = np.moveaxis(arr, -1, 0)
    return check_cutout(key, arr, stamp)


class StampParquetStore:
    """Reader of a ``stamp_parquet`` dataset rooted at ``root`` (a file or a directory)."""

    format = "stamp_parquet"

    def __init__(self, root: str | Path, stamp: int | None = None, *, stamp_column: str = STAMP_COLUMN,
                 id_column: str = ID_COLUMN) -> None:
        import pyarrow.parquet as pq

        from dhs_core.errors import UserError

        self.root, self.stamp = Path(root), stamp
        self.stamp_column, self.id_column = stamp_column, id_column
        self.files = parquet_files(self.root)
        if not self.files:
            raise UserError(f"{self.root}: no parquet files (a stamp_parquet store is a parquet file or a directory "
                            "of them)")
        self._where: dict[str, tuple[int, int, int]] = {}  # key -> (file, row group, row in group)
        for fi, path in enumerate(self.files):
            meta = pq.ParquetFile(path)
            names = meta.schema_arrow.names
            for column in (stamp_column, id_column):
                if column not in names:
                    raise UserError(f"{path}: no column {column!r} (columns: {', '.join(names)}); name the "
                                    f"{'stamp' if column == stamp_column else 'id'} column with "
                                    f"--{'stamp' if column == stamp_column else 'id'}-column")
            for gi in range(meta.num_row_groups):
                ids = meta.read_row_group(gi, columns=[id_column]).column(0).to_pylist()
                for ri, key in enumerate(ids):
                    self._where.setdefault(str(key), (fi, gi, ri))
        self._cache: OrderedDict[tuple[int, int], list] = OrderedDict()

    def __len__(self) -> int:
        return len(self._where)

    def keys(self) -> list[str]:
        return list(self._where)

    def _group(self, fi: int, gi: int) -> list:
        import pyarrow.parquet as pq

        cached = self._cache.get((fi, gi))
        if cached is None:
            table = pq.ParquetFile(self.files[fi]).read_row_group(gi, columns=[self.stamp_column])
            cached = table.column(0).to_pylist()
            self._cache[(fi, gi)] = cached
            while len(self._cache) > CACHE_GROUPS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end((fi, gi))
        return cached

    def get(self, key: str) -> np.ndarray:
        where = self._where.get(str(key))
        if where is None:
            raise CutoutError(str(key), "missing", f"no row with {self.id_column} = {key!r} in {self.root}")
        fi, gi, ri = where
        return decode_stamp(str(key), self._group(fi, gi)[ri], self.stamp)

    def get_many(self, keys: list[str]) -> np.ndarray:
        return np.stack([self.get(k) for k in keys]) if keys else np.zeros((0, 3, 0, 0), np.float32)
