"""Scale-out of the ``dask`` executor: one selection-function-sized grid on 2 Dask workers vs 1.

Usage: python benchmarks/bench_scale.py [--quick] [--reps N]
Each task is one grid cell of real injection rendering (SIE + shear lensing of a Sersic source,
PSF convolution, 3 bands, via the synthetic renderer; every host lensed) that writes its own
output file, as selection-function cells do. Both LocalClusters run 1 torch thread per worker,
start once, are warmed up (imports, PSF tables) and are timed alternately, so load from other
processes on the machine hits both alike. Baseline: the same grid on 1 worker; the budget is
ratio >= 1.7 (docs/scale.md; the executors are in docs/specs.md).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhs_core.dask_executor import DaskConfig, DaskExecutor
from dhs_inject.synthetic.catalog import build_catalog
from dhs_inject.synthetic.config import SyntheticConfig
from dhs_inject.synthetic.source import RenderTask, render_task


@dataclass(frozen=True)
class Cell:
    render: RenderTask
    output: Path


def run_cell(cell: Cell) -> float:
    images, truth = render_task(cell.render)
    tmp = cell.output.with_suffix(".tmp.npy")
    np.save(tmp, images.sum(axis=(2, 3)))  # a small per-cell result, written atomically
    tmp.replace(cell.output)
    return float(np.mean(truth["arc_snr"]))


def grid(n_cells: int, hosts_per_cell: int, stamp: int, out: Path) -> list[Cell]:
    cfg = SyntheticConfig(n_hosts=n_cells * hosts_per_cell, stamp=stamp, positive_fraction=1.0)
    cat = build_catalog(cfg, 7)
    return [Cell(RenderTask({k: v[s:s + hosts_per_cell] for k, v in cat.items()}, stamp, cfg.psf_beta, 7 + i),
                 out / f"cell_{i:03d}.npy")
            for i, s in enumerate(range(0, n_cells * hosts_per_cell, hosts_per_cell))]


def timed(executor: DaskExecutor, cells: list[Cell]) -> float:
    out = cells[0].output.parent
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    executor.map(run_cell, cells)
    dt = time.perf_counter() - t0
    assert executor.last_stats == {"run": len(cells), "skipped": 0}
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smaller grid (well under a minute)")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per cluster (default 2 quick, 3 full)")
    args = ap.parse_args()
    n_cells, hosts, stamp = (16, 32, 64) if args.quick else (60, 96, 64)
    reps = args.reps or (2 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="dhs-bench-scale-"))
    executors = {w: DaskExecutor(DaskConfig(workers=w, threads_per_worker=1, torch_threads=1)) for w in (1, 2)}
    try:
        cells = {w: grid(n_cells, hosts, stamp, work / f"w{w}") for w in executors}
        for w, ex in executors.items():  # warm-up: start the cluster, import and build tables in every worker
            timed(ex, grid(2, 8, stamp, work / f"warm{w}"))
        times: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(reps):
            for w in (1, 2) if rep % 2 == 0 else (2, 1):
                times[w].append(timed(executors[w], cells[w]))
                print(f"round {rep + 1}: {w} worker{'s' if w > 1 else ''}: {times[w][-1]:.2f} s "
                      f"({n_cells * hosts / times[w][-1]:.0f} injections/s)")
    finally:
        for ex in executors.values():
            ex.close()
        shutil.rmtree(work, ignore_errors=True)
    best = {w: min(t) for w, t in times.items()}
    r = best[1] / best[2]
    print(f"scale: ratio {r:.2f} (2 dask workers vs 1, {n_cells} cells x {hosts} injections at {stamp} px, "
          "1 torch thread each; target >= 1.7)")


if __name__ == "__main__":
    main()
