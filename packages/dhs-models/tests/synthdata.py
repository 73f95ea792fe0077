"""A tiny on-disk survey for stage tests: a DESIGN §5 manifest and npz cutouts.

Lenses carry a faint ring (an Einstein-ring caricature) on top of noise, so a network can learn
something in one epoch. Each split sits in its own patch of sky, so HEALPix-based leakage checks
pass with ``split.scheme = "manifest"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhs_data.manifest import write_manifest
from dhs_data.stores import write_npz

SPLITS = {"train": (24, 10.0), "val": (8, 120.0), "test": (8, 240.0)}  # n, ra centre (deg)


def make_survey(root: Path, stamp: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:stamp, :stamp] - (stamp - 1) / 2
    ring = np.exp(-0.5 * ((np.hypot(xx, yy) - stamp / 5) / 1.2) ** 2).astype(np.float32)
    cols: dict[str, list] = {k: [] for k in (
        "galaxy_id", "cutout_path", "ra", "dec", "type_bin", "nobs_z_bin", "split", "pool", "confuser_category",
        "psfsize_r", "psfdepth_r", "ebv", "label", "tier", "sample_weight")}
    i = 0
    for split, (n, ra0) in SPLITS.items():
        for j in range(n):
            label = j % 2
            img = rng.normal(0, 0.05, (3, stamp, stamp)).astype(np.float32) + label * ring
            key = f"cutouts/g{i:04d}.npz"
            write_npz(root, key, img)
            cols["galaxy_id"].append(f"g{i:04d}")
            cols["cutout_path"].append(key)
            cols["ra"].append(ra0 + rng.uniform(-0.5, 0.5))
            cols["dec"].append(rng.uniform(-0.5, 0.5))
            cols["type_bin"].append("SER")
            cols["nobs_z_bin"].append("3-4")
            cols["split"].append(split)
            cols["pool"].append(None if label else "N1")
            cols["confuser_category"].append(None)
            cols["psfsize_r"].append(rng.uniform(1.0, 1.6))
            cols["psfdepth_r"].append(rng.uniform(500, 3000))
            cols["ebv"].append(rng.uniform(0, 0.1))
            cols["label"].append(label)
            cols["tier"].append(("A" if j % 4 == 1 else "B") if label else None)
            cols["sample_weight"].append(1.0)
            i += 1
    write_manifest(cols, root / "manifest.parquet")
    return root / "manifest.parquet"


def data_section(manifest: Path) -> dict:
    return {"name": "manifest", "path": str(manifest), "stamp": 32, "split": {"scheme": "manifest"}}
