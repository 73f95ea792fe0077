"""Throughput of the synthetic survey renderer (cutouts/s) at 64 and 101 px, on 2 worker processes.

Usage: python benchmarks/bench_synthetic.py [--quick] [--workers N]
Baseline: the 1000 cutouts/s target for 64 px stamps (default population mix, 93:1).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from dhs_inject.synthetic.catalog import build_catalog
from dhs_inject.synthetic.config import SyntheticConfig
from dhs_inject.synthetic.source import RenderTask, render_task

TARGET = 1000.0


def _init() -> None:
    import torch

    torch.set_num_threads(1)


def throughput(stamp: int, n: int, workers: int, positive_fraction: float) -> float:
    cfg = SyntheticConfig(n_hosts=n, stamp=stamp, positive_fraction=positive_fraction, chunk_size=256)
    cat = build_catalog(cfg, 1)
    tasks = [RenderTask({k: v[s:s + 256] for k, v in cat.items()}, stamp, cfg.psf_beta, 1) for s in range(0, n, 256)]
    with ProcessPoolExecutor(workers, initializer=_init) as pool:
        list(pool.map(render_task, tasks[:workers]))  # warm-up: imports and PSF tables in every worker
        t0 = time.perf_counter()
        list(pool.map(render_task, tasks))
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer cutouts (well under a minute)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    n = 2048 if args.quick else 8192
    rates = {}
    for stamp in (64, 101):
        for pf, what in ((1 / 94, "default 93:1"), (0.2, "quickstart 20% lenses")):
            rates[(stamp, pf)] = throughput(stamp, n if stamp == 64 else n // 2, args.workers, pf)
            print(f"stamp {stamp:3d} px, {what:22s}: {rates[(stamp, pf)]:8.0f} cutouts/s ({args.workers} workers)")
    r = rates[(64, 1 / 94)] / TARGET
    print(f"synthetic: ratio {r:.2f} (64 px cutouts/s on {args.workers} workers vs 1000 cutouts/s target)")


if __name__ == "__main__":
    main()
