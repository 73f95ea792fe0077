"""Deterministic seeds (docs/specs.md, "Seeds").

Every stage or task seed is derived from ``run.seed`` and a name::

    derive_seed(seed, "train", "fold3") =
        int.from_bytes(sha256(f"{seed}/train/fold3".encode()).digest()[:4], "little") & 0x7fffffff

SHA-256 makes seeds of different names statistically independent and stable across Python
versions and platforms (unlike ``hash()``); 31 bits fit every RNG (numpy, torch, random).

Per-sample augmentation seeds follow one epoch-aware formula, so the same
sample in the same epoch gets the same augmentation whatever the number of loader workers.
"""

from __future__ import annotations

import hashlib

MASK31 = 0x7FFFFFFF


def derive_seed(seed: int, *names: str | int) -> int:
    """Seed for the stage/task ``names`` of a run whose ``run.seed`` is ``seed``."""
    key = "/".join([str(int(seed)), *(str(n) for n in names)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & MASK31


def sample_seed(seed: int, sample_idx: int, epoch: int, dataset_len: int) -> int:
    """Augmentation seed of one sample: ``(seed*1000003 + idx + epoch*len) & 0x7fffffff``."""
    return (int(seed) * 1000003 + int(sample_idx) + int(epoch) * int(dataset_len)) & MASK31
