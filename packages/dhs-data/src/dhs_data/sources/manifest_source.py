"""``manifest`` data source: an existing parquet manifest and its cutouts, used in place.

The cutouts are not copied: ``store.json`` points at their directory by absolute path. The
format comes from a ``store.json`` next to the manifest when there is one, else from the
``store`` option, else from the cutout file extension (.npz / .fits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from dhs_core.errors import UserError
from dhs_data.manifest import read_manifest, write_manifest
from dhs_data.sources.base import MANIFEST, DataSourceConfig
from dhs_data.stores import STORE_JSON, write_store_json


class ManifestSourceConfig(DataSourceConfig):
    """Options of the ``manifest`` data source."""

    # path of the parquet manifest (DESIGN §5 columns)
    path: str
    # directory the manifest's cutout_path values are relative to (default: the manifest's directory,
    # or the root named by a store.json next to it)
    data_root: str | None = None
    # cutout store format; "auto" reads store.json next to the manifest or the file extensions
    store: Literal["auto", "npz", "fits", "shards"] = "auto"
    # stamp size in pixels, when known (cutouts of another size are excluded as wrong_shape)
    stamp: int | None = None


def _detect(manifest_dir: Path, keys: list[str], cfg: ManifestSourceConfig) -> tuple[str, Path, int | None]:
    info = {}
    if (manifest_dir / STORE_JSON).is_file():
        info = json.loads((manifest_dir / STORE_JSON).read_text())
    fmt = cfg.store if cfg.store != "auto" else info.get("format")
    if fmt is None:
        exts = {Path(k).suffix.lower() for k in keys}
        if exts <= {".npz"}:
            fmt = "npz"
        elif exts <= {".fits", ".fit", ".fz"}:
            fmt = "fits"
        else:
            raise UserError(
                f"data.path = {cfg.path}: cannot tell the cutout format from extensions {sorted(exts)}; "
                "set data.store = 'npz', 'fits' or 'shards'"
            )
    root = Path(cfg.data_root) if cfg.data_root else manifest_dir / info.get("root", ".")
    return fmt, root.resolve(), cfg.stamp or info.get("stamp")


def manifest_source(config: ManifestSourceConfig, ctx: object, out_dir: Path) -> None:
    """An existing parquet manifest with npz, fits or shard cutouts."""
    path = Path(config.path)
    table = read_manifest(path)
    fmt, root, stamp = _detect(path.parent, table.column("cutout_path").to_pylist(), config)
    if not root.is_dir():
        raise UserError(f"data.data_root = {root} is not a directory (it should hold the cutouts)")
    if config.split.scheme == "manifest" and table.column("split").null_count:
        raise UserError(
            f"data.split.scheme = 'manifest' but {path} has {table.column('split').null_count} rows without a split; "
            "fill the split column or use scheme = 'healpix'"
        )
    write_manifest(table, out_dir / MANIFEST)
    write_store_json(out_dir, format=fmt, root=root, stamp=stamp)
