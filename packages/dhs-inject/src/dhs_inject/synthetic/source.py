"""The ``synthetic`` data source: catalog -> rendered cutouts -> manifest, store and truth table.

Follows the dhs-data data-source protocol (``impl(config, ctx, out_dir)``). Chunks of catalog
rows are rendered by ``ctx.executor.map`` a few at a time and streamed into the store, so memory
stays bounded by a handful of chunks whatever ``n_hosts`` is. The manifest carries only what a
real survey would (:data:`dhs_data.manifest.SCHEMA`), so a model trained on it
sees nothing a survey cutout lacks; what only a simulation knows (is_lens, theta_E, source
magnitude, arc SNR, ...) goes to ``truth.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io
from dhs_core.allocator import retain_freed_memory
from dhs_data.layout import MANIFEST, TRUTH
from dhs_data.manifest import write_manifest
from dhs_data.stores import ShardWriter, write_npz, write_store_json
from dhs_inject.synthetic import scenes as sc
from dhs_inject.synthetic.catalog import build_catalog
from dhs_inject.synthetic.config import SyntheticConfig
from dhs_inject.synthetic.render import render_chunk

STORE_ROOT = {"shards": "shards", "npz": "cutouts"}


@dataclass(frozen=True)
class RenderTask:
    """One chunk of catalog rows to render (picklable, for process-pool executors)."""

    rows: dict[str, np.ndarray]
    stamp: int
    beta: float
    seed: int


def render_task(task: RenderTask) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return render_chunk(task.rows, stamp=task.stamp, beta=task.beta, seed=task.seed)


def galaxy_ids(rows: np.ndarray) -> list[str]:
    return [f"syn{int(r):07d}" for r in rows]


def manifest_table(cat: dict[str, np.ndarray]) -> pa.Table:
    """The survey manifest of a catalog (split and healpix_128 are left to the data stage)."""
    ids = galaxy_ids(cat["row"])
    lab = sc.manifest_labels(cat["scene"])
    n = len(ids)
    return pa.table({
        "galaxy_id": ids, "cutout_path": ids, "ra": cat["ra"], "dec": cat["dec"],
        "type_bin": cat["type_bin"].astype(str).tolist(), "nobs_z_bin": cat["nobs_z_bin"].astype(str).tolist(),
        "split": pa.nulls(n, pa.string()), "pool": lab["pool"].tolist(),
        "confuser_category": lab["confuser_category"].tolist(), "psfsize_r": cat["psfsize_r"],
        "psfdepth_r": cat["psfdepth_r"], "ebv": cat["ebv"], "healpix_128": pa.nulls(n, pa.int64()),
        "label": pa.array(lab["label"], pa.int8()), "tier": lab["tier"].tolist(), "sample_weight": np.ones(n),
    })


def truth_table(cat: dict[str, np.ndarray], arc: dict[str, np.ndarray]) -> pa.Table:
    """Simulation truth per galaxy_id: never a model input."""
    lab = sc.manifest_labels(cat["scene"])
    lens = lab["is_lens"]
    nan = lambda v: np.where(lens, v, np.nan)  # noqa: E731
    host_mag = 22.5 - 2.5 * np.log10(cat["host_flux"])
    return pa.table({
        "galaxy_id": galaxy_ids(cat["row"]), "is_lens": lens,
        "scene": np.asarray(sc.SCENE_NAMES)[cat["scene"]].tolist(),
        "theta_e": nan(cat["theta_e"]), "source_mag_r": nan(arc["source_mag_r"]),
        "arc_snr": nan(arc["arc_snr"]), "magnification": nan(arc["magnification"]),
        "arc_flux_r": nan(arc["arc_flux_r"]), "arc_contrast": nan(arc["arc_contrast"]),
        "lens_e1": nan(cat["lens_e1"]), "lens_e2": nan(cat["lens_e2"]),
        "gamma1": nan(cat["gamma1"]), "gamma2": nan(cat["gamma2"]),
        "host_mag_g": host_mag[:, 0], "host_mag_r": host_mag[:, 1], "host_mag_z": host_mag[:, 2],
        "host_r_e": cat["host_r_e"], "host_sersic_n": cat["host_n"], "host_q": cat["host_q"],
        "psfdepth_g": cat["psfdepth_g"], "psfdepth_z": cat["psfdepth_z"],
    })


def synthetic_source(config: SyntheticConfig, ctx: Any, out_dir: Path) -> None:
    """Render the DR10-like synthetic survey into ``out_dir`` (manifest, store, truth)."""
    generate(config, ctx.seed_for("synthetic"), Path(out_dir), executor=ctx.executor, progress=ctx.progress,
             log=ctx.log)


def generate(config: SyntheticConfig, seed: int, out_dir: Path, *, executor=None, progress=None, log=None) -> None:
    """Write the survey for ``seed`` into ``out_dir``; without an executor, chunks render in-process."""
    # chunk after chunk of same-sized arrays: keep freed heap pages for reuse (process-wide, see
    # dhs_core.allocator; forked workers inherit it)
    retain_freed_memory()
    out_dir.mkdir(parents=True, exist_ok=True)
    cat = build_catalog(config, seed)
    n = cat["scene"].size
    starts = list(range(0, n, config.chunk_size))
    tasks = [RenderTask({k: v[s:s + config.chunk_size] for k, v in cat.items()}, config.stamp,
                        config.psf_beta, seed) for s in starts]
    # tasks at once (a Dask executor's config may name a scheduler address instead of workers)
    workers = getattr(executor, "parallelism", 1)
    group = max(1, 2 * workers)
    arc = {k: np.zeros(n) for k in ("arc_snr", "magnification", "arc_flux_r", "arc_contrast", "source_mag_r")}
    root = out_dir / STORE_ROOT[config.store]
    writer = ShardWriter(root, config.stamp) if config.store == "shards" else None
    bar = progress.task(f"synthetic survey ({config.stamp} px)", total=n) if progress is not None else None
    try:
        for g in range(0, len(tasks), group):
            batch = tasks[g:g + group]
            results = executor.map(render_task, batch) if executor is not None else [render_task(t) for t in batch]
            for task, (images, truth) in zip(batch, results):
                ids = galaxy_ids(task.rows["row"])
                for key, image in zip(ids, images):
                    if writer is not None:
                        writer.add(key, image)
                    else:
                        write_npz(root, key, image)
                rows = task.rows["row"]
                for k in arc:
                    arc[k][rows] = truth[k]
                if bar is not None:
                    bar.advance(len(ids))
        if writer is not None:
            writer.close()
    except BaseException:
        # close the shard being written: an open file keeps its blocks allocated after the
        # staging directory is removed, so a full disk would stay full for the failure record
        if writer is not None:
            writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    write_store_json(out_dir, format=config.store, root=STORE_ROOT[config.store], stamp=config.stamp)
    write_manifest(manifest_table(cat), out_dir / MANIFEST)
    with io.atomic_path(out_dir / TRUTH) as tmp:
        pq.write_table(truth_table(cat, arc), tmp)
    if log is not None:
        counts = np.bincount(cat["scene"], minlength=len(sc.SCENE_NAMES))
        log("synthetic: " + ", ".join(f"{name} {c}" for name, c in zip(sc.SCENE_NAMES, counts) if c))
