"""``dhs score`` throughput vs a bare ``model(x)`` loop over the same cutouts from the same store.

    python benchmarks/bench_score.py [--quick] [--threads N] [--device auto|cpu|cuda]
                                     [--n N] [--arch default|narrow] [--rounds R]

A packed shard store of random 64-px cutouts (5000 with ``--quick``, 10^5 otherwise, or ``--n``)
and a checkpoint of an untrained ``bottlenecked_resnet`` (a narrow one with ``--quick`` or
``--arch narrow``) are written to a temporary directory. Each
round times, alternately, :func:`dhs_models.scoring.run_scoring` from scratch (sharding, store
reads with checks, per-shard parquet, the streaming concatenation, candidates, summary) and a bare
loop (``store.get_many`` of 64 keys -> ``model(x)`` -> sigmoid) over the same cutouts; the best
round of each is compared. Budget (DESIGN §7): ratio >= 0.9. The time to score 10^6 64-px
cutouts is extrapolated from the measured dhs throughput.

The last line is ``score: ratio <r> (dhs score vs bare model(x) loop)``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")

STAMP = 64
BATCH = 64
#: the finder scored: the default bottlenecked_resnet, or (``--quick``) a narrow one, which is also the
#: harder case for the ratio, since per-cutout overhead weighs more against a cheaper network
ARCH = {"name": "bottlenecked_resnet"}
QUICK_ARCH = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}


def make_store(root: Path, n: int) -> None:
    from dhs_data.manifest import write_manifest
    from dhs_data.stores import ShardWriter, write_store_json

    rng = np.random.default_rng(0)
    keys = [f"c{i:07d}" for i in range(n)]
    write_manifest({"galaxy_id": [f"g{i}" for i in range(n)], "cutout_path": keys,
                    "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-60, 60, n),
                    "label": (np.arange(n) % 2).astype(np.int8), "split": ["test"] * n}, root / "manifest.parquet")
    with ShardWriter(root / "shards", STAMP, shard_size=1024) as w:
        for start in range(0, n, 1024):
            block = rng.standard_normal((min(1024, n - start), 3, STAMP, STAMP), dtype=np.float32) * 0.01
            for j, a in enumerate(block):
                w.add(keys[start + j], a)
    write_store_json(root, format="shards", root="shards", stamp=STAMP)


def make_checkpoint(path: Path, arch: dict) -> None:
    from dhs_core import plugins
    from dhs_models.inference import build_network

    torch.manual_seed(0)
    _, config = plugins.resolve("architecture", arch, where="model")
    architecture = {"name": arch["name"], **config.model_dump(mode="json")}
    model = build_network(architecture)
    torch.save({"model": model.state_dict(), "architecture": architecture, "preprocess": None,
                "spec": {"data": {"stamp": STAMP}}, "epoch": 0}, path)


def dhs_round(ckpt: Path, data: Path, out: Path, device: str, shard_size: int) -> float:
    from dhs_models.scoring import run_scoring

    t0 = time.perf_counter()
    summary = run_scoring(ckpt, data, out, device=device, shard_size=shard_size, batch_size=BATCH, force=True,
                          log=lambda _: None)
    elapsed = time.perf_counter() - t0
    return summary["n_scored"] / elapsed


@torch.no_grad()
def bare_round(ckpt: Path, data: Path, device: str) -> float:
    import pyarrow.parquet as pq

    from dhs_data.stores import open_store
    from dhs_models.inference import load_finder, resolve_device

    dev = resolve_device(device)
    model = load_finder(ckpt, device=dev).model  # the same network object, built once
    t0 = time.perf_counter()
    store = open_store(data)
    keys = pq.read_table(data / "manifest.parquet", columns=["cutout_path"]).column("cutout_path").to_pylist()
    n = 0
    for start in range(0, len(keys), BATCH):
        x = torch.from_numpy(store.get_many(keys[start:start + BATCH])).to(dev)
        torch.sigmoid(model(x).double()).cpu()
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5000 cutouts of a narrow network, 2 rounds")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    ap.add_argument("--n", type=int, default=None, help="cutouts scored (default 5000 with --quick, else 10^5)")
    ap.add_argument("--arch", choices=("default", "narrow"), default=None,
                    help="the finder: the default bottlenecked_resnet or a narrow one (--quick's)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2 with --quick, else 3)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, rounds = (5_000, 2) if args.quick else (100_000, 3)
    n, rounds = args.n or n, args.rounds or rounds
    narrow = args.arch == "narrow" if args.arch else args.quick
    arch = QUICK_ARCH if narrow else ARCH
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_store(root / "data", n)
        make_checkpoint(root / "best.pt", arch)
        dhs_rates, bare_rates = [], []
        for _ in range(rounds):
            bare_rates.append(bare_round(root / "best.pt", root / "data", args.device))
            dhs_rates.append(dhs_round(root / "best.pt", root / "data", root / "out", args.device, 4096))
        from dhs_models.inference import resolve_device

        dev = resolve_device(args.device)
        best_dhs, best_bare = max(dhs_rates), max(bare_rates)
        print(f"score, {n} cutouts {STAMP} px, {arch}, batch {BATCH}, device {dev}, "
              f"{torch.get_num_threads()} thread(s), {rounds} interleaved rounds")
        print(f"  dhs score: {best_dhs:9.0f} cutouts/s (rounds: {', '.join(f'{r:.0f}' for r in dhs_rates)})")
        print(f"  bare loop: {best_bare:9.0f} cutouts/s (rounds: {', '.join(f'{r:.0f}' for r in bare_rates)})")
        hours = 1e6 / best_dhs / 3600
        print(f"  extrapolated: 10^6 {STAMP}-px cutouts in {hours:.2f} h on this device "
              f"(from {n} measured, one worker)")
        print(f"score: ratio {best_dhs / best_bare:.2f} (dhs score vs bare model(x) loop)")


if __name__ == "__main__":
    main()
