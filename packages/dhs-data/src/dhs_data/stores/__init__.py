"""Cutout stores (npz / fits / shards) and ``store.json``, the file that describes one.

``data_dir/store.json``::

    {"format": "shards", "root": "shards", "stamp": 64, "bands": "grz", "version": 1}

``root`` is relative to ``data_dir`` (or absolute, for cutouts that live outside a run, as
with the ``manifest`` data source). :func:`open_store` returns a reader whose
``get(cutout_path)`` gives float32 ``(3, H, W)`` or raises
:class:`~dhs_data.stores.base.CutoutError` with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from dhs_core import io
from dhs_core.errors import UserError
from dhs_data.layout import STORE_INFO as STORE_JSON
from dhs_data.stores.base import REASONS, CutoutError, PathEscapeError, check_cutout, cutout_path
from dhs_data.stores.fits import FitsStore, write_fits
from dhs_data.stores.npz import NpzStore, write_npz
from dhs_data.stores.shards import ShardStore, ShardWriter

FORMATS = {"npz": NpzStore, "fits": FitsStore, "shards": ShardStore}


class CutoutStore(Protocol):
    format: str
    root: Path
    stamp: int | None

    def get(self, key: str) -> np.ndarray: ...


def write_store_json(data_dir: str | Path, *, format: str, root: str | Path, stamp: int | None = None) -> Path:
    """Describe the store of ``data_dir`` (atomically)."""
    if format not in FORMATS:
        raise UserError(f"store format {format!r} is not one of {', '.join(FORMATS)}")
    path = Path(data_dir) / STORE_JSON
    io.write_json(path, {"format": format, "root": str(root), "stamp": stamp, "bands": "grz", "version": 1})
    return path


def read_store_json(data_dir: str | Path) -> dict:
    path = Path(data_dir) / STORE_JSON
    if not path.is_file():
        raise UserError(f"{path} does not exist: a data directory needs a store.json describing its cutouts")
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc
    if info.get("format") not in FORMATS:
        raise UserError(f"{path}: format {info.get('format')!r} is not one of {', '.join(FORMATS)}")
    return info


def open_store(data_dir: str | Path) -> CutoutStore:
    """Open the cutout store described by ``data_dir/store.json``."""
    info = read_store_json(data_dir)
    root = Path(info.get("root") or ".")
    if not root.is_absolute():
        root = Path(data_dir) / root
    try:
        return FORMATS[info["format"]](root, info.get("stamp"))
    except CutoutError as exc:
        raise UserError(f"{Path(data_dir) / STORE_JSON}: cannot open the {info['format']} store at {root}: {exc}") from exc


__all__ = [
    "FORMATS", "REASONS", "STORE_JSON", "CutoutError", "CutoutStore", "FitsStore", "NpzStore", "PathEscapeError",
    "ShardStore", "ShardWriter", "check_cutout", "cutout_path", "open_store", "read_store_json", "write_fits",
    "write_npz", "write_store_json",
]
