"""``manifest`` data source: an existing parquet manifest and its cutouts, used in place.

The cutouts are not copied: ``store.json`` points at their directory by absolute path. The
format comes from a ``store.json`` next to the manifest when there is one, else from the
``store`` option, else from the cutout file extension (.npz / .fits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from dhs_core.errors import DhsError, UserError
from dhs_data.layout import MANIFEST, SHARD_INDEX, STORE_INFO
from dhs_data.sources.base import TABLE_BYTES, DataSourceConfig, file_fingerprint


class ManifestSourceConfig(DataSourceConfig):
    """Options of the ``manifest`` data source."""

    # path of the parquet manifest (the columns of dhs_data.manifest.SCHEMA)
    path: str
    # directory the manifest's cutout_path values are relative to (default: the manifest's directory,
    # or the root named by a store.json next to it)
    data_root: str | None = None
    # cutout store format; "auto" reads store.json next to the manifest or the file extensions
    store: Literal["auto", "npz", "fits", "shards"] = "auto"
    # stamp size in pixels, when known (cutouts of another size are excluded as wrong_shape)
    stamp: int | None = None

    def stamp_size(self) -> int | None:
        """The ``stamp`` option, else the stamp of a store.json next to the manifest, else the
        side of the manifest's first cutout; None when that cutout cannot be read (the data
        stage reports unreadable cutouts when it runs)."""
        return _stamp_size(self)

    def fingerprint(self) -> dict:
        """The manifest file (size, mtime, SHA-256), a store.json next to it, and — for a shard
        store — its index.parquet, whose CRC-32 column stands for every cutout's pixels. Cutouts
        of npz/fits stores are not digested (one read per file on every run would cost what the
        data stage costs); replacing them in place needs ``dhs run --stage data``."""
        path = Path(self.path)
        out = {"manifest": file_fingerprint(path)}
        info = _store_info(path.parent)
        if info is not None:
            out["store_json"] = file_fingerprint(path.parent / STORE_INFO)
        if (self.store if self.store != "auto" else (info or {}).get("format")) == "shards":
            root = Path(self.data_root) if self.data_root else path.parent / (info or {}).get("root", ".")
            out["shard_index"] = file_fingerprint(root / SHARD_INDEX)
        return out

    def estimate_bytes(self) -> int | None:
        """The cutouts are used in place: only the manifest (kept rows, exclusions) is written."""
        try:
            return 2 * Path(self.path).stat().st_size + TABLE_BYTES
        except OSError:
            return None


def _store_info(manifest_dir: Path) -> dict | None:
    try:
        info = json.loads((manifest_dir / STORE_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _detect(manifest_dir: Path, keys: list[str], cfg: ManifestSourceConfig) -> tuple[str, Path, int | None]:
    info = {}
    if (manifest_dir / STORE_INFO).is_file():
        info = json.loads((manifest_dir / STORE_INFO).read_text())
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


def _first_key(path: Path) -> str | None:
    """The first row's ``cutout_path``, read without loading the whole manifest."""
    import pyarrow.parquet as pq  # imported on use: validating a spec reads one row

    for batch in pq.ParquetFile(path).iter_batches(batch_size=1, columns=["cutout_path"]):
        if batch.num_rows:
            return batch.column(0)[0].as_py()
    return None


def _stamp_size(config: ManifestSourceConfig) -> int | None:
    from dhs_data.stores import FORMATS

    path = Path(config.path)
    try:
        key = _first_key(path)
        if key is None:
            return None
        fmt, root, stamp = _detect(path.parent, [key], config)
        if stamp is not None:
            return int(stamp)
        cutout = FORMATS[fmt](root, None).get(key)
    except (DhsError, OSError, ValueError, KeyError):
        # a missing manifest, column or cutout is reported by the data stage when it runs
        return None
    return int(min(cutout.shape[-2:]))


def manifest_source(config: ManifestSourceConfig, ctx: object, out_dir: Path) -> None:
    """An existing parquet manifest with npz, fits or shard cutouts."""
    from dhs_data.manifest import read_manifest, write_manifest
    from dhs_data.stores import write_store_json

    path = Path(config.path)
    table = read_manifest(path)
    fmt, root, stamp = _detect(path.parent, table.column("cutout_path").to_pylist(), config)
    if not root.is_dir():
        raise UserError(f"data.data_root = {root} is not a directory (it should hold the cutouts)")
    if fmt == "shards" and not (root / SHARD_INDEX).is_file():
        raise UserError(f"data.path = {path}: its cutouts are a shard store, but {root / SHARD_INDEX} does not exist; "
                        "point data.data_root at the directory holding the shards and their index (e.g. the "
                        "shards/ of a `dhs data pack` output)")
    if config.split.scheme == "manifest" and table.column("split").null_count:
        raise UserError(
            f"data.split.scheme = 'manifest' but {path} has {table.column('split').null_count} rows without a split; "
            "fill the split column or use scheme = 'healpix'"
        )
    write_manifest(table, out_dir / MANIFEST)
    write_store_json(out_dir, format=fmt, root=root, stamp=stamp)
