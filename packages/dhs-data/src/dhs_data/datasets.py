"""Map-style torch dataset over a data directory (contract 3 of the common brief).

``CutoutDataset(data_dir, split="train", preprocess=None, augment=False, seed=0, metadata_columns=())``
reads ``data_dir/manifest.parquet`` (written by the data stage: only cutouts that passed its
checks) and the store described by ``data_dir/store.json``.

Augmentation (flips and 90° rotations, the symmetries of a lens on a square pixel grid) draws
from ``numpy.random.default_rng(sample_seed(seed, index, epoch, len(ds)))``: the same sample in
the same epoch is augmented identically whatever the number of loader workers, and epochs
differ. The epoch lives in a shared-memory tensor, so ``set_epoch`` reaches workers that were
started earlier (``persistent_workers=True``) as well as fresh ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from dhs_core.errors import UserError
from dhs_core.seeds import sample_seed
from dhs_data.leakage import check_metadata_columns
from dhs_data.manifest import read_manifest
from dhs_data.stores import open_store


def _mix(seed: int) -> int:
    """SplitMix64 finaliser: a well-mixed 64-bit value from the per-sample seed.

    Cheaper than constructing a numpy Generator per sample (which dominated the loading cost),
    and consecutive seeds (consecutive samples) give independent-looking bits.
    """
    z = (int(seed) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def augment_cutout(cutout: np.ndarray, seed: int) -> np.ndarray:
    """One of the 8 dihedral transforms of a ``(C, H, W)`` square cutout, chosen by ``seed``."""
    bits = _mix(seed)
    k, hflip, vflip = bits & 3, bool(bits >> 2 & 1), bool(bits >> 3 & 1)
    out = np.rot90(cutout, k, axes=(-2, -1))
    if hflip:
        out = out[..., :, ::-1]
    if vflip:
        out = out[..., ::-1, :]
    return np.ascontiguousarray(out)


def build_preprocess(preprocess: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A preprocess callable from a callable, a config with ``name``, or a ``{"name": ...}`` dict."""
    if preprocess is None or callable(preprocess):
        return preprocess
    from dhs_core import plugins

    if isinstance(preprocess, Mapping):
        options = dict(preprocess)
        name = options.pop("name", None)
    else:
        name = getattr(preprocess, "name", None)
        options = preprocess.model_dump(exclude={"name"}) if hasattr(preprocess, "model_dump") else {}
    if not name:
        raise UserError(f"preprocess {preprocess!r}: give a callable or a preprocessor config with a 'name'")
    comp = plugins.get("preprocessor", name, where="preprocess.name")
    return comp.impl(comp.Config(**options))


class CutoutDataset(Dataset):
    """Cutouts of one split, as dicts of tensors (image, label, weight, index, meta, galaxy_id)."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str | None = "train",
        preprocess: Any = None,
        augment: bool = False,
        seed: int = 0,
        metadata_columns: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.metadata_columns = check_metadata_columns(metadata_columns)
        table = read_manifest(self.data_dir / "manifest.parquet")
        if split is not None:
            splits = set(table.column("split").drop_null().to_pylist())
            if split not in splits:
                raise UserError(
                    f"split {split!r} has no cutouts in {self.data_dir / 'manifest.parquet'}; splits present: "
                    f"{', '.join(sorted(splits)) or '(none — run the data stage first)'}"
                )
            table = table.filter(pc.equal(table.column("split"), split))
        self.split = split
        self.keys = table.column("cutout_path").to_pylist()
        self.galaxy_ids = table.column("galaxy_id").to_pylist()
        self.labels = table.column("label").to_numpy(zero_copy_only=False).astype(np.float32)
        self.weights = table.column("sample_weight").to_numpy(zero_copy_only=False).astype(np.float32)
        self.meta = np.zeros((table.num_rows, len(self.metadata_columns)), np.float32)
        for j, col in enumerate(self.metadata_columns):
            if col not in table.column_names:
                raise UserError(f"metadata column {col!r} is not in the manifest; columns: {', '.join(table.column_names)}")
            values = np.asarray(table.column(col).to_pylist(), dtype=float)
            if not np.isfinite(values).all():
                raise UserError(f"metadata column {col!r} has {int((~np.isfinite(values)).sum())} null/non-finite values")
            self.meta[:, j] = values
        self.store = open_store(self.data_dir)
        self.preprocess = build_preprocess(preprocess)
        self.augment = bool(augment)
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # per-sample scalars as tensors once, so __getitem__ only indexes (no per-call tensor construction)
        self._labels_t = torch.from_numpy(self.labels)
        self._weights_t = torch.from_numpy(self.weights)
        self._meta_t = torch.from_numpy(self.meta)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def image(self, i: int) -> np.ndarray:
        """The (preprocessed, augmented) float32 cutout of sample ``i``."""
        img = self.store.get(self.keys[i])
        if self.preprocess is not None:
            img = np.asarray(self.preprocess(img), dtype=np.float32)
        if self.augment:
            img = augment_cutout(img, sample_seed(self.seed, i, self.epoch, len(self)))
        return img

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return {
            "image": torch.from_numpy(self.image(i)),
            "label": self._labels_t[i],
            "weight": self._weights_t[i],
            "index": i,
            "meta": self._meta_t[i],
            "galaxy_id": self.galaxy_ids[i],
        }


def weighted_sampler(
    dataset: CutoutDataset, *, balance_labels: bool = False, num_samples: int | None = None, seed: int = 0
) -> WeightedRandomSampler:
    """Sampler drawing with probability ∝ ``sample_weight`` (times 1/class frequency if ``balance_labels``)."""
    w = dataset.weights.astype(np.float64).copy()
    if balance_labels:
        for value in (0.0, 1.0):
            sel = dataset.labels == value
            if sel.any():
                w[sel] /= sel.sum()
    if not (w > 0).any():
        raise UserError("weighted_sampler: every sample_weight is 0")
    gen = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(torch.from_numpy(w), num_samples or len(w), replacement=True, generator=gen)
