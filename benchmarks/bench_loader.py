"""Loader throughput: per-file npz vs packed .npy shards, and memory while iterating shards.

    python benchmarks/bench_loader.py --quick     # < 1 minute
    python benchmarks/bench_loader.py             # 10k cutouts for speed, 100k for memory

Throughput: one shuffled epoch of CutoutDataset (101 px, batch 64) through a torch DataLoader
with num_workers 0 and 2, for the same cutouts stored as one .npz per file and as shards.
Memory: every cutout of a large shard store is read in order while the process RSS and the
tracemalloc peak are sampled; with memory-mapped shards and a bounded set of open maps the
RSS stays flat instead of growing with the number of cutouts read.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from dhs_data.datasets import CutoutDataset
from dhs_data.manifest import write_manifest
from dhs_data.stores import ShardStore, ShardWriter, write_npz, write_store_json


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(root: Path, n: int, stamp: int, fmt: str) -> None:
    rng = np.random.default_rng(0)
    keys = [f"c/{i:06d}.npz" for i in range(n)]
    write_manifest({"galaxy_id": [f"g{i}" for i in range(n)], "cutout_path": keys,
                    "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 60, n),
                    "label": (np.arange(n) % 2).astype(np.int8), "split": ["train"] * n}, root / "manifest.parquet")
    if fmt == "npz":
        for k in keys:
            write_npz(root / "cutouts", k, rng.normal(0, 0.01, (3, stamp, stamp)).astype(np.float32))
        write_store_json(root, format="npz", root="cutouts", stamp=stamp)
        return
    with ShardWriter(root / "shards", stamp, shard_size=1024) as w:
        for start in range(0, n, 1024):
            block = rng.normal(0, 0.01, (min(1024, n - start), 3, stamp, stamp)).astype(np.float32)
            for j, a in enumerate(block):
                w.add(keys[start + j], a)
    write_store_json(root, format="shards", root="shards", stamp=stamp)


def throughput(root: Path, workers: int) -> float:
    ds = CutoutDataset(root, split="train", augment=True)
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up is not loading
    t0, n = time.perf_counter(), 0
    for batch in it:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0)


def memory(root: Path, n: int) -> dict:
    store = ShardStore(root / "shards")
    keys = store.keys()
    tracemalloc.start()
    samples = []
    for i, k in enumerate(keys):
        store.get(k)
        if i % 1000 == 0:
            samples.append(rss_mb())
    peak_py = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    # once max_open shards are mapped the footprint is at its bound: compare half-way with the end
    early = max(samples[: max(1, len(samples) // 2)])
    return {"n": n, "rss_early_mb": early, "rss_peak_mb": max(samples), "tracemalloc_peak_mb": peak_py}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_speed = 1500 if args.quick else 10000
    n_mem = 10000 if args.quick else 100000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for fmt in ("npz", "shards"):
            (tmp / fmt).mkdir()
            build(tmp / fmt, n_speed, 101, fmt)
        rates = {(fmt, w): throughput(tmp / fmt, w) for w in (0, 2) for fmt in ("npz", "shards")}
        for (fmt, w), r in rates.items():
            print(f"{fmt:7s} 101 px num_workers={w}: {r:9.0f} samples/s")
        (tmp / "big").mkdir()
        build(tmp / "big", n_mem, 64, "shards")
        mem = memory(tmp / "big", n_mem)
        print(f"memory: {mem['n']} cutouts (64 px, {mem['n'] * 3 * 64 * 64 * 4 / 2**30:.1f} GiB of shards): RSS peak over "
              f"first half {mem['rss_early_mb']:.0f} MiB, over all {mem['rss_peak_mb']:.0f} MiB; "
              f"tracemalloc peak {mem['tracemalloc_peak_mb']:.1f} MiB")
    ratios = {w: rates[("shards", w)] / rates[("npz", w)] for w in (0, 2)}
    print(f"ratio num_workers=0: {ratios[0]:.1f}x, num_workers=2: {ratios[2]:.1f}x")
    print(f"loader: ratio {min(ratios.values()):.1f} (shards vs per-file npz samples/s, 101 px, worse of num_workers 0/2)")


if __name__ == "__main__":
    main()
