"""One grid cell of the selection function: draw arcs into its hosts, score them, write one file.

A :class:`CellTask` carries only paths, plain dicts and host lists, so it pickles to executor
workers; the trained finder is loaded lazily in the worker (:func:`dhs_models.inference.load_finder`,
cached per process) and scores exactly as the train stage scored real cutouts.
The cell's output is one parquet file, written atomically: one row per validly scored
injection (score, drawn parameters, host) and, in the schema metadata, the cell's counts.
Detection is decided later from the stored scores, so a new threshold needs no re-scoring.

Counting: every attempt to place an arc in a host is either an ``n_ok`` injection (finite image,
finite score) or an ``n_failed`` attempt with a reason — the injector's own reasons (e.g.
``host_nonfinite``, ``host_not_lrg``, ``nonfinite_result``; it retries a failed host on a new
one), ``host_unreadable`` (the store could not read the host) and ``nonfinite_score`` (the model
returned NaN). Failed attempts are never scored, and a NaN score is never a non-detection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_core.io import atomic_path
from dhs_models.inference import load_finder, score_images

#: parquet schema-metadata key holding a cell's definition and counts
META_KEY = b"dhs_selection_cell"
#: drawn parameters copied to the per-injection rows (when the injector reports them)
PARAMS = ("theta_e", "src_r_mag", "beta_frac", "src_r_e", "src_n", "lens_q", "gamma_ext", "n_clumps")


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs for one cell (picklable: no models, no open files)."""

    output: str  # per-cell parquet; the executor skips the task when it exists
    cell: dict[str, Any]  # cell_id, theta_e, source_mag_lo/hi and the bin definition
    data_dir: str  # run_dir/data (manifest + cutout store)
    checkpoint: str  # train/best.pt
    preprocess: dict[str, Any] | None  # resolved [preprocess] section, None = raw cutouts
    injector: dict[str, Any]  # resolved injector config incl. name (prior replaced per cell)
    host_keys: list[str] = field(default_factory=list)  # cutout_path of each host slot
    host_meta: dict[str, list] = field(default_factory=dict)  # per-slot manifest columns
    batch_size: int = 64  # injection slots rendered and scored together
    device: str = "cpu"  # where the finder scores (resolved by the stage: "cpu" or "cuda")
    seed: int = 0  # ctx.seed_for(cell_id)


def cell_injector_config(injector: dict[str, Any], theta_e: float, mag_lo: float, mag_hi: float,
                         beta_frac: tuple[float, float] | None = None, where: str = "selection_function.injector"):
    """(component, config) of the injector with its prior pinned to the cell's theta_E, magnitude
    bin and (when the grid bins it) beta_frac bin."""
    comp, _ = plugins.resolve("injector", injector, where=where)
    if "prior" not in comp.Config.model_fields:
        raise UserError(f"selection_function.injector {comp.name!r} has no 'prior' option, so the grid cannot set "
                        "theta_e and the source magnitude per cell; use an injector built on dhs_inject's "
                        "InjectorConfig (model1, model2)")
    prior = {**dict(injector.get("prior") or {}), "theta_e": (theta_e, theta_e), "src_r_mag": (mag_lo, mag_hi)}
    if beta_frac is not None:
        prior["beta_frac"] = tuple(beta_frac)
    return plugins.resolve("injector", {**injector, "prior": prior}, where=where)


def run_cell(task: CellTask) -> dict[str, Any]:
    """Inject, score and write one cell; returns its counts."""
    from dhs_data.stores import open_store, read_readable

    cell = task.cell
    comp, cfg = cell_injector_config(task.injector, cell["theta_e"], cell["source_mag_lo"], cell["source_mag_hi"],
                                     _beta_bin(cell))
    injector = comp.impl(cfg)
    finder = load_finder(task.checkpoint, preprocess=task.preprocess, device=task.device,
                         what="selection_function: checkpoint")
    meta_columns = finder.metadata_columns
    missing = [c for c in meta_columns if c not in task.host_meta]
    if missing:
        raise UserError(f"the model fuses metadata columns {missing} that the manifest lacks")
    store = open_store(task.data_dir)
    rng = np.random.default_rng(task.seed)
    failures: dict[str, int] = {}
    rows: dict[str, list] = {}
    n_requested = len(task.host_keys)
    for start in range(0, n_requested, task.batch_size):
        keys = task.host_keys[start:start + task.batch_size]
        meta = {k: np.asarray(v[start:start + task.batch_size]) for k, v in task.host_meta.items()}
        hosts, readable, _ = read_readable(store, keys)
        if not readable.all():
            failures["host_unreadable"] = failures.get("host_unreadable", 0) + int((~readable).sum())
            meta = {k: v[readable] for k, v in meta.items()}
        if hosts is None:
            continue
        batch = injector.inject(hosts, meta, rng)
        for reason, count in batch.failures.items():
            failures[reason] = failures.get(reason, 0) + int(count)
        _check_cell_parameters(batch.params, cell, comp.name)
        finite = np.isfinite(batch.images).all(axis=(1, 2, 3))
        if not finite.all():  # an injector that breaks its protocol still never gets NaNs scored
            failures["nonfinite_result"] = failures.get("nonfinite_result", 0) + int((~finite).sum())
        images, host = batch.images[finite], batch.host_index[finite]
        model_meta = (np.stack([meta[c][host].astype(np.float32) for c in meta_columns], 1)
                      if meta_columns else None)
        scores = score_images(finder.model, images, preprocess=finder.preprocess, meta=model_meta,
                              batch_size=task.batch_size, device=finder.device)
        valid = np.isfinite(scores)
        if not valid.all():
            failures["nonfinite_score"] = failures.get("nonfinite_score", 0) + int((~valid).sum())
        keep = np.flatnonzero(finite)[valid]
        _append(rows, "galaxy_id", meta["galaxy_id"][batch.host_index[keep]].astype(str))
        _append(rows, "psfsize_r", meta["psfsize_r"][batch.host_index[keep]].astype(float))
        _append(rows, "psfdepth_r", meta["psfdepth_r"][batch.host_index[keep]].astype(float))
        _append(rows, "score", scores[valid])
        _append(rows, "arc_snr", batch.arc_snr[keep].astype(float))
        _append(rows, "magnification", batch.magnification[keep].astype(float))
        _append(rows, "injected_flux_r", batch.injected_flux[keep, 1].astype(float))
        if batch.arc_flux is not None:  # rendered (noise-free) arc flux per band and unlensed source flux
            for band, name in enumerate("grz"):
                _append(rows, f"arc_flux_{name}", batch.arc_flux[keep, band].astype(float))
            _append(rows, "source_flux_r", batch.source_flux[keep, 1].astype(float))
        for name in PARAMS:
            if name in batch.params:
                _append(rows, name, np.asarray(batch.params[name])[keep].astype(float))
    n_ok = len(rows.get("score", []))
    counts = {"n_requested": n_requested, "n_ok": n_ok, "n_failed": int(sum(failures.values())),
              "n_attempted": n_ok + int(sum(failures.values())), "failures": failures}
    table = pa.table({k: pa.array(v) for k, v in rows.items()} if rows else {"score": pa.array([], pa.float64())})
    table = table.replace_schema_metadata({META_KEY: json.dumps({"cell": cell, **counts}).encode()})
    Path(task.output).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(task.output) as tmp:
        pq.write_table(table, tmp)
    return counts


def _beta_bin(cell: dict[str, Any]) -> tuple[float, float] | None:
    """The cell's beta_frac range: its grid bin, or its prior set's range."""
    return (cell["beta_frac_lo"], cell["beta_frac_hi"]) if "beta_frac_lo" in cell else None


def _append(rows: dict[str, list], key: str, values: np.ndarray) -> None:
    rows.setdefault(key, []).extend(values.tolist())


def _check_cell_parameters(params: dict[str, np.ndarray], cell: dict[str, Any], name: str) -> None:
    """Refuse an injector that ignores the prior the grid set (its injections would land in the wrong cell)."""
    theta_e = np.asarray(params.get("theta_e", []), float)
    mag = np.asarray(params.get("src_r_mag", []), float)
    if theta_e.size and not np.allclose(theta_e, cell["theta_e"], rtol=0, atol=1e-9):
        raise UserError(f"injector {name!r} drew theta_e outside cell {cell['cell_id']} (theta_e = {cell['theta_e']}); "
                        "an injector used by the selection function must draw from its prior")
    if mag.size and ((mag < cell["source_mag_lo"] - 1e-9).any() or (mag > cell["source_mag_hi"] + 1e-9).any()):
        raise UserError(f"injector {name!r} drew source magnitudes outside cell {cell['cell_id']}")
    beta = np.asarray(params.get("beta_frac", []), float)
    bounds = _beta_bin(cell)
    if bounds and beta.size and ((beta < bounds[0] - 1e-9).any() or (beta > bounds[1] + 1e-9).any()):
        raise UserError(f"injector {name!r} drew beta_frac outside cell {cell['cell_id']}")


def read_cell(path: str | Path) -> tuple[dict[str, Any], pa.Table]:
    """(definition and counts, per-injection rows) of a finished cell file."""
    table = pq.read_table(path)
    return json.loads(table.schema.metadata[META_KEY]), table
