"""The manifest: one row per cutout, stored as parquet.

Columns and Arrow types are fixed by :data:`SCHEMA`. ``galaxy_id``, ``cutout_path``, ``ra``,
``dec`` and ``label`` are required; the other columns may be absent from a user's table and
are filled with nulls (``sample_weight`` with 1.0) — the data stage assigns ``split`` and
``healpix_128``. Extra columns are kept after the schema's (e.g. a ``host_id`` used by the
paired-control guard); simulation truth belongs in ``truth.parquet``, never here.

Validation collects every problem and raises one :class:`~dhs_core.errors.UserError` naming
each column and the offending rows, so a user fixes a table in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dhs_core import io
from dhs_core.errors import UserError

SCHEMA = pa.schema(
    [
        pa.field("galaxy_id", pa.string(), nullable=False),
        pa.field("cutout_path", pa.string(), nullable=False),  # key in the store, relative to its root
        pa.field("ra", pa.float64(), nullable=False),  # degrees, ICRS
        pa.field("dec", pa.float64(), nullable=False),  # degrees, ICRS
        pa.field("type_bin", pa.string()),  # Tractor morphology: SER, DEV, REX, EXP
        pa.field("nobs_z_bin", pa.string()),  # z-band exposure-count bin, e.g. "0-2", "3-4", "5+"
        pa.field("split", pa.string()),  # train / val / test (assigned by the data stage)
        pa.field("pool", pa.string()),  # negative pool: N1 (random LRG) or N2 (confusers)
        pa.field("confuser_category", pa.string()),  # N2 only: ring, spiral, merger, ...
        pa.field("psfsize_r", pa.float64()),  # r-band PSF FWHM, arcsec
        pa.field("psfdepth_r", pa.float64()),  # r-band PSF depth, inverse variance 1/nanomaggy^2
        pa.field("ebv", pa.float64()),  # Galactic E(B-V), mag
        pa.field("healpix_128", pa.int64()),  # HEALPix pixel (nside 128, RING) of ra/dec
        pa.field("label", pa.int8(), nullable=False),  # 1 lens, 0 non-lens
        pa.field("tier", pa.string()),  # positives: A (confident) or B (probable); null otherwise
        pa.field("sample_weight", pa.float64(), nullable=False),  # >= 0, used by losses and samplers
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
REQUIRED: tuple[str, ...] = ("galaxy_id", "cutout_path", "ra", "dec", "label")
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {"tier": ("A", "B"), "pool": ("N1", "N2")}
_MAX_ROWS_SHOWN = 10


def _rows(mask: np.ndarray, ids: np.ndarray | None) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(
        f"{i}" + (f" ({ids[i]})" if ids is not None and ids[i] is not None else "") for i in idx[:_MAX_ROWS_SHOWN]
    )
    more = f" and {len(idx) - _MAX_ROWS_SHOWN} more" if len(idx) > _MAX_ROWS_SHOWN else ""
    return f"rows {shown}{more}"


def _kind_ok(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if actual == wanted or pa.types.is_null(actual):
        return True
    if pa.types.is_floating(wanted):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(actual) or pa.types.is_boolean(actual)
    if pa.types.is_string(wanted):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_dictionary(actual)
    return False


def _to_table(data: pa.Table | Mapping[str, Any] | Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, Mapping):
        try:
            return pa.table(dict(data))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise UserError(f"manifest columns could not be converted to a table: {exc}") from exc
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        return pa.Table.from_pandas(data, preserve_index=False)
    raise UserError(f"a manifest must be a pyarrow Table, a dict of columns or a DataFrame, not {type(data).__name__}")


def validate_manifest(data: pa.Table | Mapping[str, Any], *, source: str = "manifest") -> pa.Table:
    """Check ``data`` against :data:`SCHEMA` and its value rules; return it conformed to the schema.

    Raises :class:`UserError` listing every problem (column, offending rows, what is valid).
    """
    table = _to_table(data)
    problems: list[str] = []
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise UserError(
            f"{source}: missing required column(s) {', '.join(missing)}; a manifest needs "
            f"{', '.join(REQUIRED)} (optional: {', '.join(c for c in COLUMNS if c not in REQUIRED)})"
        )
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray] = {}
    for field in SCHEMA:
        if field.name not in table.column_names:
            fill = pa.array([1.0] * n) if field.name == "sample_weight" else pa.nulls(n, field.type)
            columns[field.name] = pa.chunked_array([fill.cast(field.type)])
            continue
        col = table.column(field.name)
        if not _kind_ok(col.type, field.type):
            problems.append(f"column {field.name!r} has type {col.type}; expected {field.type}")
            continue
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        try:
            columns[field.name] = col.cast(field.type) if col.type != field.type else col
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # e.g. label 300 does not fit int8
            problems.append(f"column {field.name!r} ({col.type}) does not convert to {field.type}: {exc}")
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))

    ids = columns["galaxy_id"].to_numpy(zero_copy_only=False)
    for name in ("galaxy_id", "cutout_path", "ra", "dec", "label"):
        nulls = np.asarray(columns[name].is_null().to_numpy(zero_copy_only=False))
        if nulls.any():
            problems.append(f"column {name!r} is null in {_rows(nulls, ids)}")
    uniq, inverse, counts = np.unique(ids.astype(str), return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    if dup.any():
        problems.append(
            f"column 'galaxy_id' has duplicate values {sorted(set(uniq[counts > 1]))[:_MAX_ROWS_SHOWN]} "
            f"in {_rows(dup, None)}; each galaxy appears once"
        )
    label = columns["label"].fill_null(0).to_numpy(zero_copy_only=False)
    bad = ~np.isin(label, (0, 1))
    if bad.any():
        problems.append(f"column 'label' must be 0 or 1; got {sorted(set(label[bad].tolist()))} in {_rows(bad, ids)}")
    ra = columns["ra"].fill_null(0.0).to_numpy(zero_copy_only=False)
    dec = columns["dec"].fill_null(0.0).to_numpy(zero_copy_only=False)
    bad = ~(np.isfinite(ra) & (ra >= 0) & (ra < 360))
    if bad.any():
        problems.append(f"column 'ra' must be finite in [0, 360) degrees; bad in {_rows(bad, ids)}")
    bad = ~(np.isfinite(dec) & (dec >= -90) & (dec <= 90))
    if bad.any():
        problems.append(f"column 'dec' must be finite in [-90, 90] degrees; bad in {_rows(bad, ids)}")
    w = columns["sample_weight"].fill_null(np.nan).to_numpy(zero_copy_only=False)
    bad = ~(np.isfinite(w) & (w >= 0))
    if bad.any():
        problems.append(f"column 'sample_weight' must be finite and >= 0; bad in {_rows(bad, ids)}")
    for name, allowed in ALLOWED_VALUES.items():
        vals = columns[name]
        bad = np.asarray(pc.and_(pc.is_valid(vals), pc.invert(pc.is_in(vals, pa.array(allowed)))).to_numpy(zero_copy_only=False))
        if bad.any():
            got = sorted(set(vals.filter(pa.array(bad)).to_pylist()))
            problems.append(f"column {name!r} must be one of {', '.join(allowed)} or null; got {got} in {_rows(bad, ids)}")
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))

    extras = [c for c in table.column_names if c not in SCHEMA.names]
    arrays = [columns[f.name] for f in SCHEMA] + [table.column(c) for c in extras]
    fields = [f.with_nullable(True) if f.name not in REQUIRED and f.name != "sample_weight" else f for f in SCHEMA]
    fields += [table.schema.field(c) for c in extras]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_manifest(data: pa.Table | Mapping[str, Any], path: str | Path) -> pa.Table:
    """Validate ``data`` and write it atomically as parquet; returns the conformed table."""
    table = validate_manifest(data, source=str(path))
    with io.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return table


def read_manifest(path: str | Path, *, validate: bool = True) -> pa.Table:
    """Read a parquet manifest (validated and conformed to :data:`SCHEMA` unless ``validate=False``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"manifest {p} does not exist (expected a parquet file with columns {', '.join(REQUIRED)}, ...)")
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise UserError(f"manifest {p} is not a readable parquet file: {exc}") from exc
    return validate_manifest(table, source=str(p)) if validate else table
