"""``dhs data import``: bring the earlier pipeline's stamp tables into a dhs data directory.

The source is read as a ``stamp_parquet`` store (:mod:`dhs_data.stores.stamp_parquet`), in two
passes. First the manifest columns (no stamps) of every file: each row gets its split (from the
``split=`` / ``region_split=`` directory it sits in, or a column), rows that cannot be imported
whatever their pixels are set aside (null or repeated id, ``cutout_ok`` false), and the rest is
validated as a manifest — a table with bad ra/dec/label values or without the required columns
is refused before anything is written. Then the stamps, row group by row group: each is decoded
and the good ones are written into CRC-checked shards with the writer ``dhs data pack`` uses,
re-read and compared with the decoded pixels (:func:`dhs_data.pack.verify_copy`). A row whose
stamp cannot be used is excluded and counted by reason, never written as zeros.

Output (in a hidden sibling, moved onto ``out`` when complete): ``manifest.parquet`` (the
imported rows; ``galaxy_id`` = ``cutout_path`` = the id; schema columns the table lacks are
null, ``sample_weight`` 1), ``store.json`` + ``shards/``, ``import_report.json`` (counts by
reason and split, the first excluded rows) and ``import_excluded.parquet`` (every excluded row).
"""

from __future__ import annotations

import shutil
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io
from dhs_core.errors import DhsError, UserError
from dhs_core.rundir import write_failure
from dhs_data.layout import IMPORT_EXCLUDED, IMPORT_REPORT, MANIFEST, SHARDS_DIR
from dhs_data.manifest import COLUMNS, REQUIRED, validate_manifest, write_manifest
from dhs_data.pack import check_out, publish, staging_dir, verify_copy
from dhs_data.stores import ShardWriter, write_store_json
from dhs_data.stores.base import CutoutError
from dhs_data.stores.stamp_parquet import ID_COLUMN, STAMP_COLUMN, StampParquetStore, partition_values

#: hive partition keys read as the split, in order of preference (the earlier pipeline wrote region_split)
SPLIT_KEYS = ("split", "region_split")
#: the earlier pipeline's per-row verdict on its own cutout; a row it marked false is not imported
OK_FLAG = "cutout_ok"
#: reasons a row is left out before its stamp is read (the stamp reasons are CutoutError's REASONS)
ROW_REASONS = ("missing_id", "duplicate_id", "cutout_ok_false")
#: manifest columns a stamp table must hold beside the stamps (galaxy_id and cutout_path are the id)
NEEDED = tuple(c for c in REQUIRED if c not in ("galaxy_id", "cutout_path"))
#: excluded rows listed in import_report.json (all of them are in import_excluded.parquet)
SHOWN = 200
_EXCLUDED_SCHEMA = pa.schema([("galaxy_id", pa.string()), ("file", pa.string()), ("row", pa.int64()),
                              ("split", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def split_source(split_from: str) -> str | None:
    """``--split-from`` as the column to read: None for "partition", "" for "none", else a column name
    ("column" is the ``split`` column)."""
    if split_from == "partition":
        return None
    if split_from == "none":
        return ""
    return "split" if split_from == "column" else split_from


def import_stamp_parquet(src: str | Path, out: str | Path, *, stamp_column: str = STAMP_COLUMN,
                         id_column: str = ID_COLUMN, split_from: str = "partition", shard_size: int = 1024,
                         force: bool = False, start: Callable[[int], None] | None = None,
                         advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Convert the stamp table ``src`` into the data directory ``out``; returns the import report.

    ``split_from``: "partition" (the hive directory), "column" (the ``split`` column), another
    column's name, or "none" (no split: the data stage assigns HEALPix splits). ``start(total)``
    is called once the rows to decode are known, ``advance(n)`` per stamp decoded and per stamp
    verified (2 x total). ``force`` replaces an existing data directory at ``out``.
    """
    src, out = Path(src), Path(out)
    advance = advance or (lambda n: None)
    if shard_size < 1:
        raise UserError(f"--shard-size {shard_size}: must be >= 1")
    check_out(out, force=force, force_flag="--force")
    store = StampParquetStore(src, stamp_column=stamp_column, id_column=id_column)
    manifest, excluded = _manifest_pass(store, split_source(split_from))
    keys = manifest.column("cutout_path").to_pylist()
    splits = manifest.column("split").to_pylist()
    if start is not None:
        start(2 * len(keys))
    tmp = staging_dir(out)
    writer: ShardWriter | None = None
    try:
        ok, crcs = np.zeros(len(keys), bool), {}
        for i, key in enumerate(keys):
            try:
                image = store.get(key)
                if writer is None and image.shape[1] != image.shape[2]:
                    raise CutoutError(key, "wrong_shape", f"shape {image.shape}; stamps are square")
            except CutoutError as exc:
                excluded.append(_row(store, key, splits[i], exc.reason, exc.detail))
                advance(1)
                continue
            if writer is None:
                # the first good stamp sets the size; the store then refuses others as wrong_shape
                writer = ShardWriter(tmp / SHARDS_DIR, image.shape[-1], shard_size=shard_size)
                store.stamp = writer.stamp
            writer.add(key, image)
            crcs[key] = zlib.crc32(image.tobytes())
            ok[i] = True
            advance(1)
        if writer is None:
            reasons = dict(Counter(e["reason"] for e in excluded))
            raise UserError(f"{src}: none of its {sum(map(len, store.ids))} rows has a usable stamp ({reasons}); "
                            f"see the stamp column {stamp_column!r}")
        writer.close()
        verify_copy(tmp / SHARDS_DIR, writer.stamp, crcs, advance)
        kept = manifest.filter(pa.array(ok))
        write_manifest(kept, tmp / MANIFEST)
        write_store_json(tmp, format="shards", root=SHARDS_DIR, stamp=writer.stamp)
        report = _report(store, src, kept, excluded, split_from, writer.stamp, shard_size)
        with io.atomic_path(tmp / IMPORT_EXCLUDED) as path:
            pq.write_table(pa.Table.from_pylist(excluded, schema=_EXCLUDED_SCHEMA), path)
        io.write_json(tmp / IMPORT_REPORT, report)
        publish(tmp, out)
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        described = write_failure(exc)  # a full disk, an I/O error: one line, exit 1
        if described:
            raise DhsError(f"dhs data import: {described}; the partial output {tmp} was removed") from None
        raise
    return report


def _manifest_pass(store: StampParquetStore, split_column: str | None) -> tuple[pa.Table, list[dict]]:
    """The manifest of the rows whose stamps will be read (validated), and the rows set aside."""
    missing, unsplit = [], []
    for path in store.files:
        names = pq.ParquetFile(path).schema_arrow.names
        lacking = [c for c in NEEDED if c not in names]
        if split_column and split_column not in names:
            lacking.append(split_column)
        if lacking:
            missing.append(f"{path} lacks {', '.join(lacking)}")
        if split_column is None and not any(k in partition_values(path, store.root) for k in SPLIT_KEYS):
            unsplit.append(str(path))
    if missing:
        raise UserError(f"missing manifest column(s): {'; '.join(_first(missing))}. A stamp table needs "
                        f"{store.id_column}, {', '.join(NEEDED)} beside the stamps (optional: "
                        f"{', '.join(c for c in COLUMNS if c not in REQUIRED and c != 'split')})"
                        + (f"; --split-from {split_column} reads the split from that column" if split_column else ""))
    if unsplit:
        raise UserError(f"--split-from partition, but {'; '.join(_first(unsplit))} "
                        f"{'is' if len(unsplit) == 1 else 'are'} not under a split=... or region_split=... directory; "
                        "pass --split-from COLUMN to read the split from a column, or --split-from none to leave it "
                        "to the data stage (HEALPix splits)")
    tables, excluded = [], []
    for fi, path in enumerate(store.files):
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        wanted = [c for c in COLUMNS if c in names and c not in ("galaxy_id", "cutout_path", "split")]
        extra = [c for c in (OK_FLAG, split_column) if c and c in names and c not in wanted]
        table = pf.read(columns=wanted + extra)
        ids = store.ids[fi]
        if split_column is None:
            parts = partition_values(path, store.root)
            split = [next(parts[k] for k in SPLIT_KEYS if k in parts)] * len(ids)
        elif split_column:
            split = [None if v is None else str(v) for v in table.column(split_column).to_pylist()]
        else:
            split = [None] * len(ids)
        flags = table.column(OK_FLAG).to_pylist() if OK_FLAG in names else [None] * len(ids)
        keep = np.ones(len(ids), bool)
        for row, key in enumerate(ids):
            if key is None:
                reason, detail = "missing_id", f"{store.id_column} is null"
            elif key in store.repeated:
                reason, detail = "duplicate_id", f"{store.repeated[key]} rows have {store.id_column} = {key!r}"
            elif flags[row] is not None and not flags[row]:
                reason, detail = "cutout_ok_false", f"{OK_FLAG} is false: the earlier pipeline rejected this cutout"
            else:
                continue
            keep[row] = False
            excluded.append({"galaxy_id": key, "file": str(path), "row": row, "split": split[row], "reason": reason,
                             "detail": detail})
        columns = {c: table.column(c) for c in wanted}
        columns.update(galaxy_id=pa.array(ids, pa.string()), cutout_path=pa.array(ids, pa.string()),
                       split=pa.array(split, pa.string()))
        kept = pa.table(columns).filter(pa.array(keep))
        tables.append(validate_manifest(kept, source=str(path)))
    return pa.concat_tables(tables), excluded


def _first(items: list[str], n: int = 5) -> list[str]:
    return items[:n] + ([f"and {len(items) - n} more"] if len(items) > n else [])


def _row(store: StampParquetStore, key: str, split: str | None, reason: str, detail: str) -> dict:
    path, row = store.locate(key) or (store.root, -1)
    return {"galaxy_id": key, "file": str(path), "row": row, "split": split, "reason": reason, "detail": detail}


def _report(store: StampParquetStore, src: Path, kept: pa.Table, excluded: list[dict], split_from: str,
            stamp: int, shard_size: int) -> dict[str, Any]:
    by_split: dict[str, Counter] = {}
    for e in excluded:
        by_split.setdefault(str(e["split"]), Counter())[e["reason"]] += 1
    return {
        "source": str(src),
        "files": len(store.files),
        "n_input": sum(map(len, store.ids)),
        "n_imported": kept.num_rows,
        "n_excluded": len(excluded),
        "excluded_by_reason": dict(Counter(e["reason"] for e in excluded)),
        "excluded_by_split": {s: dict(c) for s, c in by_split.items()},
        "splits": dict(Counter(str(s) for s in kept.column("split").to_pylist())),
        "excluded_rows": excluded[:SHOWN],
        "stamp": stamp,
        "shard_size": shard_size,
        "stamp_column": store.stamp_column,
        "id_column": store.id_column,
        "split_from": split_from,
        "verified": True,
    }
