"""Map-style torch dataset over a data directory written by the data stage.

``CutoutDataset(data_dir, split="train", preprocess=None, augment=False, seed=0, metadata_columns=())``
reads ``data_dir/manifest.parquet`` (written by the data stage: only cutouts that passed its
checks) and the store described by ``data_dir/store.json``.

Augmentation (flips and 90° rotations, the symmetries of a lens on a square pixel grid) draws
from ``numpy.random.default_rng(sample_seed(seed, index, epoch, len(ds)))``: the same sample in
the same epoch is augmented identically whatever the number of loader workers, and epochs
differ. The epoch lives in a shared-memory tensor, so ``set_epoch`` reaches workers that were
started earlier (``persistent_workers=True``) as well as fresh ones.

Batches: torch's ``DataLoader`` calls :meth:`CutoutDataset.__getitems__` with a batch of
indices when it exists. That path reads the whole batch with the store's ``get_many`` (for
shards: one fancy-index per memory-mapped shard, the augmentation applied as a view during that
copy), preprocesses the ``(N, 3, H, W)`` batch in one call and returns a :class:`CutoutBatch`:
already-stacked tensors that :func:`collate` passes through untouched. Indexing a
:class:`CutoutBatch` gives the per-sample dicts of ``ds[i]``, so torch's ``default_collate``
still works on it (slower); pass ``collate_fn=dhs_data.datasets.collate`` for the fast path.
Results are identical element for element to stacking ``ds[i]`` (tested).

Integrity (docs/data.md, "Integrity"): with ``verify=True`` (default) the dataset checks, when
it is opened, every cutout it will read — for shards each one's CRC-32 against the index, in
one sequential pass; for npz/FITS that each file exists (their own checksums are checked on
every read). Damage stops here, before training starts, with a
:class:`~dhs_core.errors.DataIntegrityError` naming the cutouts and ``dhs data verify``, rather
than excluding cutouts mid-epoch (which would silently change the batches, and differently in
each loader worker). The verified pages are remembered per process and travel to loader workers
with the dataset, so reads during training do not check them again. A cutout that still fails
to read later (changed during the run) raises the same error.
"""

from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow.compute as pc
import torch
from torch.utils.data import Dataset, WeightedRandomSampler, default_collate, get_worker_info

from dhs_core.errors import DataIntegrityError, UserError
from dhs_core.seeds import sample_seed
from dhs_data.augment import augment_batch, augment_cutout, dihedral_codes, dihedral_view
from dhs_data.layout import MANIFEST
from dhs_data.leakage import check_metadata_columns
from dhs_data.manifest import read_manifest
from dhs_data.stores import CutoutError, open_store


def _read_data_manifest(data_dir: Path):
    """The manifest of a data directory; one that exists but cannot be read is damage, not bad input."""
    path = data_dir / MANIFEST
    try:
        return read_manifest(path)
    except UserError as exc:
        if path.is_file():
            raise DataIntegrityError(f"{exc}; the data stage wrote it, so {data_dir} is damaged: rerun the data "
                                     "stage or restore the file") from None
        raise


def build_preprocess(preprocess: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A preprocess callable from a callable, a config with ``name``, or a ``{"name": ...}`` dict."""
    if preprocess is None or callable(preprocess):
        return preprocess
    from dhs_core import plugins

    return plugins.build("preprocessor", preprocess, where="preprocess")


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
        verify: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.metadata_columns = check_metadata_columns(metadata_columns)
        table = _read_data_manifest(self.data_dir)
        if split is not None:
            splits = set(table.column("split").drop_null().to_pylist())
            if split not in splits:
                raise UserError(
                    f"split {split!r} has no cutouts in {self.data_dir / MANIFEST}; splits present: "
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
        if verify:
            self._verify_at_open()
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

    def _verify_at_open(self) -> None:
        """Check every cutout this dataset will read; raise DataIntegrityError on any damage."""
        from dhs_data.integrity import damage_error
        from dhs_data.stores import CutoutError, ShardStore

        if isinstance(self.store, ShardStore):
            damaged = self.store.verify(self.keys)
        else:
            damaged = [CutoutError(k, "missing", f"no file {path}", path=path) for k in self.keys
                       if not (path := self.store.path(k)).is_file()]
        if damaged:
            what = "cutouts" if self.split is None else f"cutouts of split {self.split!r}"
            raise damage_error(self.data_dir, damaged, len(self.keys), what=what)

    def _read(self, read: Callable[[], np.ndarray]) -> np.ndarray:
        """``read()``, with a cutout that fails (after the data stage checked it) as DataIntegrityError."""
        try:
            return read()
        except CutoutError as exc:
            if isinstance(exc, UserError):  # a path escaping the root is the user's input, not damage
                raise
            from dhs_data.integrity import damage_error

            raise damage_error(self.data_dir, [exc], len(self.keys)) from None

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def image(self, i: int) -> np.ndarray:
        """The (preprocessed, augmented) float32 cutout of sample ``i``."""
        img = self._read(lambda: self.store.get(self.keys[i]))
        if self.preprocess is not None:
            img = np.asarray(self.preprocess(img), dtype=np.float32)
        if self.augment:
            img = augment_cutout(img, sample_seed(self.seed, i, self.epoch, len(self)))
        return img

    def __getitems__(self, indices: Sequence[int]) -> CutoutBatch:
        """The samples ``indices`` as one already-stacked :class:`CutoutBatch` (the DataLoader fast path)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = int(idx[(idx < 0) | (idx >= len(self))][0])
            raise IndexError(f"index {bad} out of range for {len(self)} samples")
        keys = [self.keys[i] for i in idx.tolist()]
        codes = None
        if self.augment:
            epoch, n = self.epoch, len(self)
            codes = dihedral_codes([sample_seed(self.seed, i, epoch, n) for i in idx.tolist()])
        buffers: list[torch.Tensor] = []
        alloc = _shared_alloc(buffers) if get_worker_info() is not None else None
        if self.preprocess is None:
            # read + augment fused: one copy per cutout, straight into the (shared) batch buffer
            images = self._read(lambda: self.store.get_many(
                keys, codes=codes, view=dihedral_view if self.augment else None, alloc=alloc))
        else:
            raw = self._read(lambda: self.store.get_many(keys))
            pre = np.asarray(self.preprocess(raw), dtype=np.float32)
            if pre.ndim != 4 or pre.shape[0] != len(keys):
                raise UserError(f"preprocess returned shape {pre.shape} for a batch of shape {raw.shape}; a "
                                "preprocessor must map (N,3,H,W) to (N,3,H',W'), one output cutout per input")
            images = (alloc or _empty)(pre.shape)
            if codes is not None:
                augment_batch(pre, codes, out=images)
            else:
                np.copyto(images, pre)
        image = buffers[0] if buffers else torch.from_numpy(images)
        t_idx = torch.from_numpy(idx)
        return CutoutBatch({
            "image": image,
            "label": self._labels_t[t_idx],
            "weight": self._weights_t[t_idx],
            "index": t_idx,
            "meta": self._meta_t[t_idx],
            "galaxy_id": [self.galaxy_ids[i] for i in idx.tolist()],
        })

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


class CutoutBatch(Sequence):
    """One batch from :meth:`CutoutDataset.__getitems__`: stacked tensors in :attr:`batch`.

    ``batch`` has the keys of ``ds[i]`` with a leading batch axis: ``image`` (N,3,H,W), ``label``,
    ``weight`` (N,) float32, ``index`` (N,) int64, ``meta`` (N, len(metadata_columns)) float32,
    ``galaxy_id`` list of str — the same as ``default_collate`` makes of the ``ds[i]``.
    ``batch_obj[j]`` is sample ``j`` as the dict ``ds[indices[j]]`` returns.
    """

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch["galaxy_id"])

    def __getitem__(self, j: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= j < len(self):
            raise IndexError(f"sample {j} out of range for a batch of {len(self)}")
        b = self.batch
        return {"image": b["image"][j], "label": b["label"][j], "weight": b["weight"][j],
                "index": int(b["index"][j]), "meta": b["meta"][j], "galaxy_id": b["galaxy_id"][j]}


def collate(samples: CutoutBatch | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``collate_fn`` for a DataLoader over :class:`CutoutDataset` (the fast path).

    A :class:`CutoutBatch` or an already-stacked dict is returned as the batch dict without
    copying; a list of ``ds[i]`` dicts is stacked by ``torch.utils.data.default_collate``.
    """
    if isinstance(samples, CutoutBatch):
        return dict(samples.batch)
    if isinstance(samples, Mapping):
        return dict(samples)
    return default_collate(list(samples))


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)


def _shared_alloc(keep: list[torch.Tensor]) -> Callable[[tuple[int, ...]], np.ndarray]:
    """An allocator of float32 arrays backed by shared memory (inside a loader worker).

    A batch leaves a worker through a queue; a tensor whose storage is already shared is sent
    as a handle, anything else is first copied into new shared memory. Filling a shared buffer
    directly saves that copy (default_collate does the same). The tensor is kept in ``keep``.
    """

    def alloc(shape: tuple[int, ...]) -> np.ndarray:
        proto = torch.empty(0, dtype=torch.float32)
        storage = proto._typed_storage()._new_shared(prod(shape), device=proto.device)
        tensor = proto.new(storage).resize_(shape)
        keep.append(tensor)
        return tensor.numpy()

    return alloc


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
