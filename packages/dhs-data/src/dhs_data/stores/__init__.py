"""Cutout stores (npz / fits / shards / stamp_parquet) and ``store.json``, the file that describes one.

``data_dir/store.json``::

    {"format": "shards", "root": "shards", "stamp": 64, "bands": "grz", "version": 1}

``root`` is relative to ``data_dir`` (or absolute, for cutouts that live outside a run, as
with the ``manifest`` data source). A ``stamp_parquet`` store may add ``"options":
{"stamp_column": ..., "id_column": ...}`` for tables whose columns are named otherwise. :func:`open_store` returns a reader whose
``get(cutout_path)`` gives float32 ``(3, H, W)`` or raises
:class:`~dhs_data.stores.base.CutoutError` with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from dhs_core import io
from dhs_core.errors import DataIntegrityError, UserError
from dhs_data.layout import MANIFEST
from dhs_data.layout import STORE_INFO as STORE_JSON
from dhs_data.stores.base import (
    READABLE,
    REASONS,
    CutoutError,
    PathEscapeError,
    Readable,
    check_cutout,
    cutout_path,
    read_readable,
)
from dhs_data.stores.fits import FitsStore, write_fits
from dhs_data.stores.npz import NpzStore, read_npz_cutout, write_npz
from dhs_data.stores.shards import VERIFY_MODES, ShardStore, ShardWriter
from dhs_data.stores.stamp_parquet import StampParquetStore

FORMATS = {"npz": NpzStore, "fits": FitsStore, "shards": ShardStore, "stamp_parquet": StampParquetStore}


class CutoutStore(Protocol):
    format: str
    root: Path
    stamp: int | None

    def get(self, key: str) -> np.ndarray: ...


#: store.json ``options`` each format accepts (keyword arguments of its reader)
OPTIONS = {"stamp_parquet": ("stamp_column", "id_column")}


def write_store_json(data_dir: str | Path, *, format: str, root: str | Path, stamp: int | None = None,
                     options: dict[str, str] | None = None) -> Path:
    """Describe the store of ``data_dir`` (atomically)."""
    if format not in FORMATS:
        raise UserError(f"store format {format!r} is not one of {', '.join(FORMATS)}")
    _check_options(format, options or {}, "store.json")
    info = {"format": format, "root": str(root), "stamp": stamp, "bands": "grz", "version": 1}
    if options:
        info["options"] = dict(options)
    path = Path(data_dir) / STORE_JSON
    io.write_json(path, info)
    return path


def _check_options(format: str, options: object, where: str) -> None:
    allowed = OPTIONS.get(format, ())
    if not isinstance(options, dict) or any(k not in allowed for k in options):
        raise UserError(f"{where}: options {options!r} are not valid for format {format!r} (allowed: "
                        f"{', '.join(allowed) or 'none'})")


def read_store_json(data_dir: str | Path) -> dict:
    """``data_dir/store.json`` as a dict.

    No store.json (and no manifest) means ``data_dir`` is not a data directory: a
    :class:`UserError`. A data directory that has its manifest but lost or garbled its
    store.json is damaged: :class:`~dhs_core.errors.DataIntegrityError`.
    """
    path = Path(data_dir) / STORE_JSON
    damaged = (Path(data_dir) / MANIFEST).is_file()
    if not path.is_file():
        if damaged:
            raise DataIntegrityError(f"data directory {data_dir} has a {MANIFEST} but no {STORE_JSON}: it is "
                                     "damaged; rerun the data stage (dhs run --stage data) or restore the file")
        raise UserError(f"{path} does not exist: a data directory needs a store.json describing its cutouts")
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        if damaged:
            raise DataIntegrityError(f"{path} is not valid JSON ({exc}): the data directory is damaged; rerun "
                                     "the data stage (dhs run --stage data) or restore the file") from None
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if info.get("format") not in FORMATS:
        raise UserError(f"{path}: format {info.get('format')!r} is not one of {', '.join(FORMATS)}")
    _check_options(info["format"], info.get("options", {}), str(path))
    return info


def open_store(data_dir: str | Path, *, verify: str = "first-read") -> CutoutStore:
    """Open the cutout store described by ``data_dir/store.json``.

    ``verify`` (shards only: see :data:`~dhs_data.stores.shards.VERIFY_MODES`) says when each
    cutout's CRC-32 is checked; npz and FITS-with-DATASUM files are checked on every read. A shard
    store whose index is missing or unreadable raises :class:`~dhs_core.errors.DataIntegrityError`.
    """
    info = read_store_json(data_dir)
    root = Path(info.get("root") or ".")
    if not root.is_absolute():
        root = Path(data_dir) / root
    if info["format"] == "shards":
        return ShardStore(root, info.get("stamp"), verify=verify)
    return FORMATS[info["format"]](root, info.get("stamp"), **info.get("options", {}))


__all__ = [
    "FORMATS", "READABLE", "REASONS", "STORE_JSON", "CutoutError", "CutoutStore", "FitsStore", "NpzStore", "PathEscapeError", "Readable",
    "VERIFY_MODES", "ShardStore", "ShardWriter", "StampParquetStore", "check_cutout", "cutout_path", "open_store",
    "read_npz_cutout", "read_readable", "read_store_json", "write_fits", "write_npz", "write_store_json",
]
