"""Builders of tiny manifests and stores for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhs_data.manifest import write_manifest
from dhs_data.stores import ShardWriter, write_fits, write_npz, write_store_json


def manifest_dict(n: int, *, seed: int = 0, ext: str = "npz") -> dict:
    rng = np.random.default_rng(seed)
    return {
        "galaxy_id": [f"g{i:04d}" for i in range(n)],
        "cutout_path": [f"c/g{i:04d}.{ext}" for i in range(n)],
        "ra": rng.uniform(0, 360, n),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "type_bin": rng.choice(["SER", "DEV", "REX"], n).tolist(),
        "nobs_z_bin": ["3-4"] * n,
        "pool": [None if i % 4 == 0 else ("N1" if i % 3 else "N2") for i in range(n)],
        "confuser_category": [("ring" if (i % 4 and not i % 3) else None) for i in range(n)],
        "psfsize_r": rng.uniform(1.0, 1.6, n),
        "psfdepth_r": rng.uniform(500, 3000, n),
        "ebv": rng.uniform(0, 0.1, n),
        "label": [1 if i % 4 == 0 else 0 for i in range(n)],
        "tier": [("A" if i % 8 == 0 else "B") if i % 4 == 0 else None for i in range(n)],
        "sample_weight": np.ones(n),
    }


def cutouts(n: int, stamp: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.01, (n, 3, stamp, stamp)).astype(np.float32)


def make_data_dir(root: Path, n: int = 24, *, stamp: int = 32, fmt: str = "npz", seed: int = 0,
                  splits: bool = True) -> tuple[Path, np.ndarray]:
    """A data directory (manifest.parquet + store + store.json); returns it and the pixels."""
    ext = {"npz": "npz", "fits": "fits", "shards": "npz"}[fmt]
    data = manifest_dict(n, seed=seed, ext=ext)
    pix = cutouts(n, stamp, seed)
    if fmt == "shards":
        with ShardWriter(root / "shards", stamp, shard_size=7) as w:
            for key, a in zip(data["cutout_path"], pix):
                w.add(key, a)
        write_store_json(root, format="shards", root="shards", stamp=stamp)
    else:
        for key, a in zip(data["cutout_path"], pix):
            (write_npz if fmt == "npz" else write_fits)(root / "cutouts", key, a)
        write_store_json(root, format=fmt, root="cutouts", stamp=stamp)
    if splits:
        data["split"] = (["train", "train", "val", "test"] * n)[:n]
    write_manifest(data, root / "manifest.parquet")
    return root, pix
