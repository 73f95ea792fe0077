"""``dhs data import``: bring the earlier pipeline's stamp tables into a dhs data directory.

Reads a ``stamp_parquet`` dataset (:mod:`dhs_data.stores.stamp_parquet`) row group by row group,
decodes each stamp, writes the good ones into CRC-checked shards (:class:`ShardWriter`, the
writer ``dhs data pack`` uses) and the manifest columns beside them into ``manifest.parquet``
(columns the table lacks are null; the split comes from the hive partition or a column). A row
whose stamp cannot be used is excluded and counted by reason, never written as zeros; the
counts go to ``import_report.json`` with the first excluded rows. Memory holds one row group.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io
from dhs_core.errors import UserError
from dhs_data.layout import MANIFEST
from dhs_data.manifest import REQUIRED, SCHEMA, write_manifest
from dhs_data.stores import ShardWriter, write_store_json
from dhs_data.stores.base import CutoutError
from dhs_data.stores.stamp_parquet import decode_stamp, parquet_files, partition_values

REPORT = "import_report.json"
#: hive partition keys read as the split, in order of preference (Gen1/Gen2 wrote region_split)
SPLIT_KEYS = ("split", "region_split")


def import_stamp_parquet(src: str | Path, out: str | Path, *, stamp_column: str = "stamp_npz",
                         id_column: str = "galaxy_id", split_from: str = "partition", shard_size: int = 1024,
                         force: bool = False, advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Convert ``src`` into the data directory ``out``; returns the import report."""
    src, out = Path(src), Path(out)
    files = parquet_files(src)
    if not files:
        raise UserError(f"{src}: no parquet files to import")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UserError(f"{out} exists and is not empty; choose a new directory or pass --force to replace it")
        shutil.rmtree(out)
    for path in files:
        names = pq.ParquetFile(path).schema_arrow.names
        if stamp_column not in names:
            raise UserError(f"{path}: no stamp column {stamp_column!r} (columns: {', '.join(names)}); name it with "
                            "--stamp-column")
        missing = [c for c in REQUIRED if c not in ("cutout_path",) and c != "galaxy_id" and c not in names]
        if id_column not in names:
            missing.insert(0, id_column)
        if missing:
            raise UserError(f"{path}: missing manifest column(s) {', '.join(missing)}; a stamp table needs "
                            f"{id_column}, ra, dec and label beside the stamps")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    writer: ShardWriter | None = None
    rows: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    seen: set[str] = set()
    n_input = 0
    try:
        for path in files:
            parts = partition_values(path, src)
            meta = pq.ParquetFile(path)
            keep = [c for c in meta.schema_arrow.names if c in SCHEMA.names or c == id_column or c == stamp_column]
            for gi in range(meta.num_row_groups):
                group = meta.read_row_group(gi, columns=keep).to_pylist()
                for row in group:
                    n_input += 1
                    key = str(row.get(id_column))
                    try:
                        if key in seen:
                            raise CutoutError(key, "unreadable", f"{id_column} {key!r} appears twice")
                        image = decode_stamp(key, row.get(stamp_column))
                    except CutoutError as exc:
                        reasons[exc.reason] += 1
                        if len(excluded) < 200:
                            excluded.append({"galaxy_id": key, "file": str(path), "row_group": gi,
                                             "reason": exc.reason, "detail": exc.detail})
                        continue
                    if writer is None:
                        writer = ShardWriter(staging / "shards", int(image.shape[-1]), shard_size=shard_size)
                    elif image.shape[-1] != writer.stamp:
                        reasons["wrong_shape"] += 1
                        if len(excluded) < 200:
                            excluded.append({"galaxy_id": key, "file": str(path), "row_group": gi,
                                             "reason": "wrong_shape",
                                             "detail": f"{image.shape[-1]} px; the other stamps are {writer.stamp} px"})
                        continue
                    writer.add(key, image)
                    seen.add(key)
                    rows.append(_manifest_row(row, key, id_column, parts, split_from))
                if advance is not None:
                    advance(len(group))
        if writer is None:
            raise UserError(f"{src}: none of the {n_input} stamps could be read ({dict(reasons)})")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    write_manifest(table, staging / MANIFEST)
    write_store_json(staging, format="shards", root="shards", stamp=writer.stamp)
    report = {"source": str(src), "n_input": n_input, "n_imported": len(rows), "n_excluded": int(sum(reasons.values())),
              "excluded_by_reason": dict(reasons), "excluded_rows": excluded, "stamp": writer.stamp,
              "stamp_column": stamp_column, "id_column": id_column, "split_from": split_from,
              "splits": dict(Counter(r["split"] for r in rows))}
    io.write_json(staging / REPORT, report)
    staging.rename(out)
    return report


def _manifest_row(row: dict[str, Any], key: str, id_column: str, parts: dict[str, str], split_from: str) -> dict:
    out = {name: row.get(name) for name in SCHEMA.names}
    out["galaxy_id"] = key
    out["cutout_path"] = key
    if split_from == "partition":
        split = next((parts[k] for k in SPLIT_KEYS if k in parts), None)
    else:
        split = row.get(split_from)
    out["split"] = None if split is None else str(split)
    if out.get("sample_weight") is None:
        out["sample_weight"] = 1.0
    label = row.get("label")
    out["label"] = None if label is None else int(label)
    for name in ("ra", "dec", "psfsize_r", "psfdepth_r", "ebv"):
        if out.get(name) is not None:
            out[name] = float(out[name])
    out["healpix_128"] = None if out.get("healpix_128") is None or np.isnan(float(out["healpix_128"])) \
        else int(out["healpix_128"])
    return out
