import numpy as np
import pytest
import torch
from helpers import make_data_dir
from torch.utils.data import DataLoader

from dhs_core.errors import UserError
from dhs_core.seeds import sample_seed
from dhs_data.datasets import CutoutDataset, augment_cutout, weighted_sampler


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d, pix = make_data_dir(tmp_path_factory.mktemp("d"), 40, stamp=16, fmt="shards")
    return d, pix


def test_item_contract(data_dir):
    d, pix = data_dir
    ds = CutoutDataset(d, split="train", metadata_columns=("psfsize_r", "psfdepth_r"))
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 16, 16)
    assert item["label"].dtype == torch.float32 and item["label"].shape == ()
    assert item["weight"].dtype == torch.float32 and item["meta"].shape == (2,)
    assert isinstance(item["index"], int) and isinstance(item["galaxy_id"], str)
    gid = int(item["galaxy_id"][1:])
    np.testing.assert_array_equal(item["image"].numpy(), pix[gid])
    assert len(ds) == 20  # make_data_dir puts half the rows in train


def test_augmentation_is_a_dihedral_transform_seeded_per_sample_and_epoch(data_dir):
    d, pix = data_dir
    ds = CutoutDataset(d, augment=True, seed=3)
    ds.set_epoch(2)
    a = ds[5]["image"].numpy()
    src = pix[int(ds[5]["galaxy_id"][1:])]
    expected = augment_cutout(src, sample_seed(3, 5, 2, len(ds)))
    np.testing.assert_array_equal(a, expected)
    dihedral = [np.rot90(t, k, axes=(-2, -1)) for t in (src, src[..., ::-1]) for k in range(4)]
    assert any(np.array_equal(a, t) for t in dihedral)
    # epochs differ for at least some samples
    e2 = np.stack([ds[i]["image"].numpy() for i in range(len(ds))])
    ds.set_epoch(3)
    e3 = np.stack([ds[i]["image"].numpy() for i in range(len(ds))])
    assert not np.array_equal(e2, e3)


def _epoch_images(ds, workers, epoch):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers)
    idx, imgs = [], []
    for batch in loader:
        idx += batch["index"].tolist()
        imgs.append(batch["image"])
    return idx, torch.cat(imgs)


def test_two_workers_cover_every_index_once_and_match_single_process(data_dir):
    d, _ = data_dir
    ds = CutoutDataset(d, augment=True, seed=9)
    idx0, imgs0 = _epoch_images(ds, 0, 1)
    idx2, imgs2 = _epoch_images(ds, 2, 1)
    assert sorted(idx2) == list(range(len(ds))) and len(idx2) == len(ds)
    assert idx0 == idx2 and torch.equal(imgs0, imgs2)


def test_set_epoch_reaches_persistent_workers(data_dir):
    d, _ = data_dir
    ds = CutoutDataset(d, augment=True, seed=9)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = torch.cat([b["image"] for b in loader])
        want = torch.stack([ds[i]["image"] for i in range(len(ds))])
        assert torch.equal(got, want)


def test_preprocess_by_callable(data_dir):
    d, pix = data_dir
    ds = CutoutDataset(d, preprocess=lambda x: x[..., 4:12, 4:12] * 2)
    assert ds[0]["image"].shape == (3, 8, 8)


def test_metadata_deny_list_and_missing(data_dir):
    d, _ = data_dir
    for col in ("label", "theta_e", "arc_snr", "magnification", "tier"):
        with pytest.raises(UserError, match="leak"):
            CutoutDataset(d, metadata_columns=("psfsize_r", col))
    with pytest.raises(UserError, match="not in the manifest"):
        CutoutDataset(d, metadata_columns=("seeing",))
    with pytest.raises(UserError, match="no cutouts"):
        CutoutDataset(d, split="holdout")


def test_weighted_sampler_balances_labels(data_dir):
    d, _ = data_dir
    ds = CutoutDataset(d)
    s = weighted_sampler(ds, balance_labels=True, num_samples=4000, seed=1)
    labels = ds.labels[list(s)]
    assert abs(labels.mean() - 0.5) < 0.05
