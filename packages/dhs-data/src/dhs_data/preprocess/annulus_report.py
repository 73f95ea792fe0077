"""``dhs data annulus-compare``: the annulus diagnostic over a sample of a data directory.

Label-0 cutouts are sampled first: lensed arcs sit at 1–3" (4–12 px), inside any annulus worth
comparing, and would bias the sky statistics of positives. Unreadable cutouts are skipped and
counted, never replaced by zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhs_core.errors import UserError
from dhs_core.io import write_json
from dhs_data.layout import DATA_DIR, MANIFEST
from dhs_data.manifest import read_manifest
from dhs_data.preprocess.annulus_comparison import annulus_comparison
from dhs_data.stores import open_store
from dhs_data.stores.base import CutoutError


def run_annulus_comparison(
    data_dir: str | Path,
    annulus_a: tuple[float, float] | str,
    annulus_b: tuple[float, float] | str,
    *,
    n: int = 500,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict:
    data_dir = Path(data_dir)
    manifest = data_dir / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{data_dir}: no {MANIFEST} (give the data directory of a run, e.g. runs/<name>/{DATA_DIR})")
    table = read_manifest(manifest)
    labels = np.asarray(table.column("label").to_numpy(zero_copy_only=False))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == 0)), rng.permutation(np.flatnonzero(labels != 0))])
    pick = order[:n]
    store = open_store(data_dir)
    keys = table.column("cutout_path").to_pylist()
    cutouts, rows, unreadable = [], [], 0
    for i in pick.tolist():
        try:
            cutouts.append(store.get(keys[i]))
            rows.append(i)
        except CutoutError:
            unreadable += 1
    if len(cutouts) < 2:
        raise UserError(f"{data_dir}: fewer than 2 readable cutouts to compare")

    def column(name: str) -> np.ndarray | None:
        if name not in table.column_names:
            return None
        values = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)[rows]
        return values if np.isfinite(values).all() else None

    report = annulus_comparison(
        np.stack(cutouts), psfsize_r=column("psfsize_r"), psfdepth_r=column("psfdepth_r"),
        annulus_a=annulus_a, annulus_b=annulus_b,
    )
    report["n_unreadable"] = unreadable
    report["n_label0"] = int((labels[rows] == 0).sum())
    if out is not None:
        write_json(out, report)
    return report
