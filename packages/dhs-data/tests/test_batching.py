"""The batched loading path (__getitems__, get_many, collate) gives exactly what ds[i] gives."""

import numpy as np
import pytest
import torch
from helpers import make_data_dir
from torch.utils.data import DataLoader, Subset, default_collate

from dhs_core.errors import UserError
from dhs_data.augment import (
    augment_batch,
    canonical_code,
    dihedral_code,
    dihedral_codes,
    dihedral_view,
    mix,
    mix_array,
)
from dhs_data.datasets import CutoutBatch, CutoutDataset, collate
from dhs_data.stores import CutoutError, ShardStore, open_store

KEYS = ("image", "label", "weight", "index", "meta", "galaxy_id")


@pytest.fixture(scope="module", params=["shards", "npz", "fits"])
def data_dir(request, tmp_path_factory):
    d, _ = make_data_dir(tmp_path_factory.mktemp(request.param), 40, stamp=16, fmt=request.param)
    return d


def reference_dihedral(x: np.ndarray, code16: int) -> np.ndarray:
    """The per-sample augmentation written with np.rot90 and flips, independent of dihedral_view."""
    out = np.rot90(x, code16 & 3, axes=(-2, -1))
    if code16 >> 2 & 1:
        out = out[..., :, ::-1]
    if code16 >> 3 & 1:
        out = out[..., ::-1, :]
    return out


def assert_batch_equal(got: dict, samples: list[dict]) -> None:
    want = default_collate(samples)
    assert set(got) == set(KEYS)
    for key in KEYS:
        if key == "galaxy_id":
            assert got[key] == want[key]
        else:
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key


def test_codes_vectorised_equal_scalar_and_views_equal_rot90_flips():
    seeds = np.r_[0:5000, 0x7FFFFFFF - np.arange(100)]
    assert [int(v) for v in mix_array(seeds)] == [mix(int(s)) for s in seeds]
    assert dihedral_codes(seeds).tolist() == [dihedral_code(int(s)) for s in seeds]
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 9))
    for code16 in range(16):
        # the canonical code (0..7) of code16 reproduces the full 16-code definition
        expected = reference_dihedral(x, code16)
        np.testing.assert_array_equal(dihedral_view(x, int(canonical_code(code16))), expected)
    # all 8 transforms occur, about equally often
    counts = np.bincount(dihedral_codes(np.arange(80000)), minlength=8)
    assert counts.size == 8 and counts.min() > 9000


def test_augment_batch_matches_per_sample():
    x = np.random.default_rng(1).normal(size=(20, 3, 8, 8)).astype(np.float32)
    codes = dihedral_codes(np.arange(20) * 7)
    got = augment_batch(x, codes)
    for j in range(20):
        np.testing.assert_array_equal(got[j], dihedral_view(x[j], int(codes[j])))
    with pytest.raises(ValueError, match="square"):
        augment_batch(x[..., :6], codes)


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("preprocess", [None, {"name": "raw_robust", "annulus": [4, 7]},
                                        {"name": "center_crop", "size": 10}])
def test_getitems_equals_stacking_getitem(data_dir, augment, preprocess):
    ds = CutoutDataset(data_dir, split=None, augment=augment, seed=5, preprocess=preprocess,
                       metadata_columns=("psfsize_r",))
    # unsorted, across shards (shard_size 7), with a repeat (weighted sampling draws with replacement)
    indices = [17, 3, 39, 3, 22, 0, 8, 31, 12, 26]
    for epoch in (0, 4):
        ds.set_epoch(epoch)
        batch = ds.__getitems__(indices)
        assert isinstance(batch, CutoutBatch) and len(batch) == len(indices)
        samples = [ds[i] for i in indices]
        assert_batch_equal(collate(batch), samples)
        # indexing the batch gives the per-sample dicts, so default_collate still works on it
        for j, i in enumerate(indices):
            assert batch[j]["index"] == i and batch[j]["galaxy_id"] == samples[j]["galaxy_id"]
            assert torch.equal(batch[j]["image"], samples[j]["image"])
        assert_batch_equal(default_collate(batch), samples)
    with pytest.raises(IndexError):
        ds.__getitems__([0, len(ds)])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_with_collate_covers_every_index_once(data_dir, workers):
    ds = CutoutDataset(data_dir, split=None, augment=True, seed=11)
    ds.set_epoch(2)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(ds, batch_size=6, shuffle=True, generator=gen, num_workers=workers, collate_fn=collate)
    batches = list(loader)
    idx = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(idx) == list(range(len(ds)))
    got = torch.cat([b["image"] for b in batches])
    want = torch.stack([ds[i]["image"] for i in idx])
    assert torch.equal(got, want)
    assert sum((b["galaxy_id"] for b in batches), []) == [ds.galaxy_ids[i] for i in idx]


def test_collate_accepts_sample_lists_batches_and_subsets(data_dir):
    ds = CutoutDataset(data_dir, split=None)
    samples = [ds[i] for i in (1, 2, 5)]
    assert_batch_equal(collate(samples), samples)
    stacked = collate(ds.__getitems__([1, 2, 5]))
    assert collate(stacked) == stacked  # an already-stacked dict passes through
    sub = Subset(ds, [5, 2, 1])
    batch = next(iter(DataLoader(sub, batch_size=3, collate_fn=collate)))
    assert batch["index"].tolist() == [5, 2, 1]


def test_preprocess_must_accept_batches(data_dir):
    ds = CutoutDataset(data_dir, split=None, preprocess=lambda x: x.reshape(-1, *x.shape[-3:])[0])
    with pytest.raises(UserError, match=r"\(N,3,H,W\)"):
        ds.__getitems__([0, 1])


def test_get_many_errors_like_get(tmp_path):
    d, pix = make_data_dir(tmp_path, 20, stamp=8, fmt="shards")
    store = open_store(d)
    keys = store.keys()
    np.testing.assert_array_equal(store.get_many(keys[3:10]), np.stack([store.get(k) for k in keys[3:10]]))
    assert store.get_many([]).shape == (0, 3, 8, 8)
    with pytest.raises(CutoutError) as exc:
        store.get_many([keys[0], "c/nope.npz"])
    assert exc.value.reason == "missing" and exc.value.key == "c/nope.npz"
    # a NaN written into a shard after packing: both paths refuse that cutout, naming it
    shard = np.load(d / "shards" / "shard_00001.npy", mmap_mode="r+")
    shard[2, 1, 3, 3] = np.nan
    shard.flush()
    del shard
    store = ShardStore(d / "shards", 8)
    bad = keys[7 + 2]
    for read in (lambda: store.get(bad), lambda: store.get_many([keys[0], bad, keys[12]])):
        with pytest.raises(CutoutError) as exc:
            read()
        assert exc.value.reason == "non_finite" and exc.value.key == bad
    npz_dir, _ = make_data_dir(tmp_path / "npz", 4, stamp=8, fmt="npz")
    npz = open_store(npz_dir)
    with pytest.raises(CutoutError) as exc:
        npz.get_many(["c/g0000.npz", "c/missing.npz"])
    assert exc.value.reason == "missing"
