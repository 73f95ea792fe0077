"""Loader throughput: per-file npz vs packed .npy shards, and memory while iterating shards.

    python benchmarks/bench_loader.py --quick     # < 1 minute
    python benchmarks/bench_loader.py             # 10k cutouts for speed, 100k (~4.6 GiB) for memory

Throughput: shuffled, augmented epochs of CutoutDataset (101 px, batch 64) through a torch
DataLoader with num_workers 0 and 2, for the same cutouts stored as one .npz per file and as
shards, with identical loader settings (``collate_fn=dhs_data.datasets.collate``, the batched
``__getitems__`` path for both stores; npz reads its files one by one within it).
Memory: every cutout of a large shard store (64 px; 100k cutouts in the full run) is read key by
key and then through one shuffled loader epoch while the process RSS (split into anonymous and
mapped-file pages) is sampled; with memory-mapped shards and a bounded set of open maps the RSS
stays flat instead of growing with the number of cutouts read. The store lives in a temporary
directory that is deleted at the end.

Integrity: the cost of checking every shard cutout's CRC-32 (docs/data.md, "Integrity"), measured
side by side in interleaved rounds on one 101 px shard store, num_workers=0: opening the dataset
plus one shuffled, augmented epoch with no checks at all (``verify="never"``, the baseline) vs
the default (the dataset verifies its cutouts when opened, reads then trust them) vs no check at
open and each cutout checked on its first read. A second epoch shows the steady state.
``--verify-only`` runs just this part.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from dhs_data.datasets import CutoutDataset, collate
from dhs_data.manifest import write_manifest
from dhs_data.stores import ShardStore, ShardWriter, write_npz, write_store_json
from dhs_data.stores.shards import _VERIFIED


def rss_mb() -> dict[str, float]:
    """Resident memory of this process (MiB): total, anonymous (heap) and file-backed (mapped shards)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            for key, name in (("VmRSS:", "rss"), ("RssAnon:", "anon"), ("RssFile:", "file")):
                if line.startswith(key):
                    out[name] = int(line.split()[1]) / 1024
    return out


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
            block = rng.standard_normal((min(1024, n - start), 3, stamp, stamp), dtype=np.float32) * 0.01
            for j, a in enumerate(block):
                w.add(keys[start + j], a)
    write_store_json(root, format="shards", root="shards", stamp=stamp)


def throughput(root: Path, workers: int, min_seconds: float) -> float:
    """Samples/s of shuffled, augmented epochs (batch 64) until ``min_seconds`` have been timed.

    The same loader settings for every store: ``collate_fn=collate`` (both stores take the
    batched ``__getitems__`` path; npz reads its files one by one there), persistent workers, a
    new shuffle and augmentation per epoch. Only the first batch is untimed (worker start-up).
    """
    ds = CutoutDataset(root, split="train", augment=True)
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0)
    epoch, n, t0 = 0, 0, None
    while t0 is None or time.perf_counter() - t0 < min_seconds:
        ds.set_epoch(epoch)
        for batch in loader:
            if t0 is None:
                t0 = time.perf_counter()  # worker start-up is not loading
                continue
            n += batch["image"].shape[0]
        epoch += 1
    return n / (time.perf_counter() - t0)


def memory(root: Path, n: int) -> dict:
    """RSS while reading every cutout of a shard store: key by key, then one shuffled loader epoch.

    Half-way and final peaks are compared: once ``max_open`` shards are mapped the footprint is
    at its bound, so a flat profile means nothing accumulates with the number of cutouts read.
    """
    store = ShardStore(root / "shards")
    keys = store.keys()
    tracemalloc.start()
    seq = []
    for i, k in enumerate(keys):
        store.get(k)
        if i % 1000 == 0:
            seq.append(rss_mb())
    peak_py = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    ds = CutoutDataset(root, split="train", augment=True)
    loader = DataLoader(ds, batch_size=256, shuffle=True, num_workers=0, collate_fn=collate)
    shuffled, seen, t0 = [], 0, time.perf_counter()
    for j, batch in enumerate(loader):
        seen += batch["image"].shape[0]
        if j % 4 == 0:
            shuffled.append(rss_mb())
    rate = seen / (time.perf_counter() - t0)
    assert seen == n
    out = {"n": n, "tracemalloc_peak_mb": peak_py, "shuffled_rate": rate}
    for name, samples in (("seq", seq), ("shuffled", shuffled)):
        half = samples[: max(1, len(samples) // 2)]
        for kind in ("rss", "anon", "file"):
            out[f"{name}_{kind}_half"] = max(x[kind] for x in half)
            out[f"{name}_{kind}_peak"] = max(x[kind] for x in samples)
    return out


def open_and_epochs(root: Path, mode: str) -> tuple[float, float, float]:
    """Seconds to open the train dataset, for its first and for its second shuffled epoch.

    ``mode``: ``never`` (no CRC check anywhere), ``open`` (the default: the dataset verifies the
    cutouts it will read when opened), ``first-read`` (no check at open; each cutout is checked
    the first time it is read). What this process verified before is forgotten first.
    """
    _VERIFIED.clear()
    t0 = time.perf_counter()
    ds = CutoutDataset(root, split="train", augment=True, verify=mode == "open")
    if mode == "never":
        ds.store.verify_mode = "never"
    t1 = time.perf_counter()
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=0, collate_fn=collate)
    times = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["image"].shape[0]
        times.append(time.perf_counter() - start)
        assert n == len(ds)
    return t1 - t0, times[0], times[1]


def verification(root: Path, rounds: int) -> dict:
    """Interleaved rounds of :func:`open_and_epochs` for each mode; ratios are per round (baseline
    seconds / checked seconds, so 1.0 = free), summarised by median and range."""
    modes = ("never", "open", "first-read")
    runs: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    open_and_epochs(root, "never")  # warm the page cache
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:
            runs[mode].append(open_and_epochs(root, mode))
    out = {}
    for mode in ("open", "first-read"):
        first = [(b[0] + b[1]) / (c[0] + c[1]) for b, c in zip(runs["never"], runs[mode])]
        steady = [b[2] / c[2] for b, c in zip(runs["never"], runs[mode])]
        out[mode] = {"first": first, "steady": steady,
                     "open_s": float(np.median([c[0] for c in runs[mode]])),
                     "epoch_s": float(np.median([c[1] for c in runs[mode]]))}
    out["never"] = {"open_s": float(np.median([c[0] for c in runs["never"]])),
                    "epoch_s": float(np.median([c[1] for c in runs["never"]]))}
    return out


def report_verification(tmp: Path, n: int, rounds: int) -> float:
    (tmp / "verify").mkdir()
    build(tmp / "verify", n, 101, "shards")
    res = verification(tmp / "verify", rounds)
    base = res["never"]
    print(f"integrity, {n} cutouts 101 px, {rounds} interleaved rounds, num_workers=0: no checks open "
          f"{base['open_s']:.3f} s + epoch {base['epoch_s']:.3f} s")
    for mode, what in (("open", "verify when opened (default)"), ("first-read", "check on first read")):
        r = res[mode]
        first, steady = np.array(r["first"]), np.array(r["steady"])
        print(f"  {what}: open {r['open_s']:.3f} s + epoch {r['epoch_s']:.3f} s; ratio open+first epoch "
              f"{np.median(first):.2f} (range {first.min():.2f}-{first.max():.2f}), second epoch "
              f"{np.median(steady):.2f} (range {steady.min():.2f}-{steady.max():.2f})")
    ratio = float(np.median(res["open"]["first"]))
    print(f"integrity: ratio {ratio:.2f} (open + first epoch with CRC-32 verification vs without, shards 101 px)")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--verify-only", action="store_true", help="only the integrity-check cost")
    args = ap.parse_args()
    n_speed = 1500 if args.quick else 10000
    n_mem = 10000 if args.quick else 100000
    min_seconds = 3.0 if args.quick else 10.0
    rounds = 5 if args.quick else 9
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report_verification(tmp, n_speed, rounds)
        if args.verify_only:
            return
        for fmt in ("npz", "shards"):
            (tmp / fmt).mkdir()
            build(tmp / fmt, n_speed, 101, fmt)
        rates = {(fmt, w): throughput(tmp / fmt, w, min_seconds) for w in (0, 2) for fmt in ("npz", "shards")}
        for (fmt, w), r in rates.items():
            print(f"{fmt:7s} 101 px num_workers={w}: {r:9.0f} samples/s")
        (tmp / "big").mkdir()
        build(tmp / "big", n_mem, 64, "shards")
        mem = memory(tmp / "big", n_mem)
        gib = mem["n"] * 3 * 64 * 64 * 4 / 2**30
        print(f"memory: {mem['n']} cutouts, 64 px, {gib:.1f} GiB of shards; tracemalloc peak "
              f"{mem['tracemalloc_peak_mb']:.1f} MiB (key by key)")
        for name, what in (("seq", "key by key (store.get)"), ("shuffled", "shuffled loader epoch, batch 256")):
            print(f"  {what}: RSS peak first half / all {mem[name + '_rss_half']:.0f} / {mem[name + '_rss_peak']:.0f} "
                  f"MiB (anonymous {mem[name + '_anon_half']:.0f} / {mem[name + '_anon_peak']:.0f}, mapped shard "
                  f"pages {mem[name + '_file_half']:.0f} / {mem[name + '_file_peak']:.0f})")
        print(f"  shuffled epoch over the {gib:.1f} GiB store: {mem['shuffled_rate']:.0f} samples/s")
    ratios = {w: rates[("shards", w)] / rates[("npz", w)] for w in (0, 2)}
    print(f"ratio num_workers=0: {ratios[0]:.1f}x, num_workers=2: {ratios[2]:.1f}x")
    print(f"loader: ratio {min(ratios.values()):.1f} (shards vs per-file npz samples/s, 101 px, worse of num_workers 0/2)")


if __name__ == "__main__":
    main()
