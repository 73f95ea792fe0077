"""Leakage guards: refuse inputs that let a model see the label through a side door."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa

from dhs_core.errors import UserError

#: columns derived from the label or the injected lens: never model inputs
LABEL_DERIVED = frozenset(
    {
        "label", "tier", "sample_weight", "pool", "confuser_category", "split", "arc_snr", "snr",
        "magnification", "mu", "theta_e", "theta_e_arcsec", "einstein_radius", "source_mag", "src_mag",
        "beta_frac", "q_lens", "e1", "e2", "gamma1", "gamma2", "injected", "is_injected", "lensed",
        "host_id", "galaxy_id", "cutout_path",
    }
)


def check_metadata_columns(columns: Iterable[str], *, where: str = "metadata_columns") -> tuple[str, ...]:
    """Refuse metadata model inputs that are derived from the label or the injection."""
    cols = tuple(columns)
    bad = [c for c in cols if c.lower() in LABEL_DERIVED]
    if bad:
        raise UserError(
            f"{where} = {list(cols)}: {', '.join(bad)} derive from the label or the injected lens and "
            "would leak it into the model; use observing conditions such as psfsize_r, psfdepth_r, ebv"
        )
    return cols


def host_keys(table: pa.Table) -> np.ndarray:
    """Which physical galaxy each row shows: ``host_id`` when given, else its position to ~0.04"."""
    if "host_id" in table.column_names:
        return np.asarray(table.column("host_id").to_pylist(), dtype=object).astype(str)
    ra = np.round(table.column("ra").to_numpy(zero_copy_only=False), 5)
    dec = np.round(table.column("dec").to_numpy(zero_copy_only=False), 5)
    return np.char.add(np.char.add(ra.astype(str), ","), dec.astype(str))


def paired_control_rows(table: pa.Table) -> np.ndarray:
    """Boolean mask of rows whose galaxy appears both as a positive and as a negative."""
    keys = host_keys(table)
    label = table.column("label").to_numpy(zero_copy_only=False)
    both = np.intersect1d(keys[label == 1], keys[label == 0])
    return np.isin(keys, both)


def check_paired_controls(table: pa.Table, *, allowed: bool, source: str = "manifest") -> int:
    """Number of paired rows; raises unless ``allowed`` (``split.paired_controls = true``)."""
    mask = paired_control_rows(table)
    n = int(mask.sum())
    if n and not allowed:
        ids = np.asarray(table.column("galaxy_id").to_pylist(), dtype=object)[mask][:6]
        raise UserError(
            f"{source}: {n} rows are paired controls — the same galaxy appears as an injected positive and "
            f"as an unlensed negative (e.g. {', '.join(map(str, ids))}); a model trained on such pairs learns "
            "'extra flux' rather than arcs. Remove the controls, or set split.paired_controls = true to allow it"
        )
    return n
