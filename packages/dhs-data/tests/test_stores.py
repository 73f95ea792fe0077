import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from helpers import cutouts

from dhs_core.errors import UserError
from dhs_data.stores import (
    FORMATS,
    CutoutError,
    FitsStore,
    NpzStore,
    PathEscapeError,
    ShardStore,
    ShardWriter,
    cutout_path,
    open_store,
    write_fits,
    write_npz,
    write_store_json,
)


def _write_shards(root, keys, pix):
    with ShardWriter(root / "s", 16, shard_size=2) as w:
        for k, a in zip(keys, pix):
            w.add(k, a.astype(np.float64))
    write_store_json(root, format="shards", root="s", stamp=16)
    assert sorted(p.name for p in (root / "s").iterdir()) == [
        "index.parquet", "shard_00000.npy", "shard_00001.npy", "shard_00002.npy"]


def _write_files(fmt):
    def write(root, keys, pix):
        for k, a in zip(keys, pix):
            (write_npz if fmt == "npz" else write_fits)(root / "c", k, a)
        write_store_json(root, format=fmt, root="c", stamp=16)
    return write


def _write_stamp_parquet(root, keys, pix):
    blobs = []
    for a in pix:
        buf = io.BytesIO()
        np.savez_compressed(buf, cutout=a)
        blobs.append(buf.getvalue())
    pq.write_table(pa.table({"galaxy_id": keys, "stamp_npz": blobs}), root / "stamps.parquet", row_group_size=2)
    write_store_json(root, format="stamp_parquet", root="stamps.parquet", stamp=16)


#: how a test writes a small store of each registered format (a new format needs an entry)
WRITERS = {"npz": _write_files("npz"), "fits": _write_files("fits"), "shards": _write_shards,
           "stamp_parquet": _write_stamp_parquet}


def test_every_store_format_has_a_writer_here():
    assert sorted(WRITERS) == sorted(FORMATS)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_roundtrip_float32(tmp_path, fmt):
    pix = cutouts(5, 16)
    keys = [f"a/{i}.x" for i in range(5)]
    WRITERS[fmt](tmp_path, keys, pix)
    store = open_store(tmp_path)
    assert store.format == fmt
    for k, a in zip(keys, pix):
        got = store.get(k)
        assert got.dtype == np.float32 and got.shape == (3, 16, 16)
        np.testing.assert_array_equal(got, a)
    batch = store.get_many(keys[::-1])
    assert batch.dtype == np.float32 and batch.shape == (5, 3, 16, 16)
    np.testing.assert_array_equal(batch, pix[::-1])
    with pytest.raises(CutoutError) as exc:
        store.get("a/none.x")
    assert exc.value.reason == "missing"


def test_last_shard_sized_exactly(tmp_path):
    with ShardWriter(tmp_path, 8, shard_size=4) as w:
        for i, a in enumerate(cutouts(6, 8)):
            w.add(str(i), a)
    assert np.load(tmp_path / "shard_00001.npy", mmap_mode="r").shape == (2, 3, 8, 8)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("key", ["../outside.npz", "/etc/passwd", "a/../../b.npz", ""])
def test_path_escaping_root_refused(tmp_path, key):
    with pytest.raises(PathEscapeError) as exc:
        cutout_path(tmp_path / "root", key)
    assert isinstance(exc.value, UserError) and exc.value.reason == "outside_root"
    with pytest.raises(CutoutError):
        NpzStore(tmp_path / "root").get(key)


def test_symlink_out_of_root_refused(tmp_path):
    (tmp_path / "root").mkdir()
    outside = write_npz(tmp_path / "elsewhere", "x.npz", cutouts(1, 8)[0])
    (tmp_path / "root" / "link.npz").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        NpzStore(tmp_path / "root").get("link.npz")


def _reason(store, key):
    with pytest.raises(CutoutError) as exc:
        store.get(key)
    return exc.value.reason


def test_npz_bad_files(tmp_path):
    a = cutouts(1, 8)[0]
    p = write_npz(tmp_path, "t.npz", a)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 100)
    nan = a.copy()
    nan[1, 2, 3] = np.nan
    write_npz(tmp_path, "nan.npz", nan)
    write_npz(tmp_path, "two.npz", a[:2])
    np.savez(tmp_path / "multi.npz", x=a, y=a)
    write_npz(tmp_path, "hwc.npz", np.moveaxis(a, 0, -1))
    store = NpzStore(tmp_path, stamp=8)
    assert _reason(store, "t.npz") == "truncated"
    assert _reason(store, "junk.npz") in ("truncated", "unreadable")
    assert _reason(store, "nan.npz") == "non_finite"
    assert _reason(store, "two.npz") == "wrong_shape"
    assert _reason(store, "multi.npz") == "unreadable"
    assert _reason(store, "missing.npz") == "missing"
    np.testing.assert_array_equal(store.get("hwc.npz"), a)
    write_npz(tmp_path, "big.npz", cutouts(1, 10)[0])
    assert _reason(store, "big.npz") == "wrong_shape"


def test_fits_layout_and_bad_files(tmp_path):
    a = cutouts(1, 8)[0]
    write_fits(tmp_path, "ok.fits", a)
    h = fits.getheader(tmp_path / "ok.fits")
    assert h["BANDS"] == "grz" and h["BAND0"] == "g" and h["NAXIS3"] == 3
    write_fits(tmp_path, "zrg.fits", a[::-1], bands="zrg")
    write_fits(tmp_path, "two.fits", a[:2], bands="gr")
    p = write_fits(tmp_path, "short.fits", a)
    p.write_bytes(p.read_bytes()[:4000])
    (tmp_path / "junk.fits").write_bytes(b"hello" * 1000)
    nan = a.copy()
    nan[0, 0, 0] = np.inf
    write_fits(tmp_path, "inf.fits", nan)
    store = FitsStore(tmp_path)
    np.testing.assert_array_equal(store.get("ok.fits"), a)
    np.testing.assert_array_equal(store.get("zrg.fits"), a)
    assert _reason(store, "two.fits") == "wrong_shape"
    assert _reason(store, "short.fits") == "truncated"
    assert _reason(store, "junk.fits") in ("truncated", "unreadable")
    assert _reason(store, "inf.fits") == "non_finite"


def test_shards_truncated_and_missing_shard(tmp_path):
    with ShardWriter(tmp_path, 8, shard_size=2) as w:
        for i, a in enumerate(cutouts(4, 8)):
            w.add(str(i), a)
    p = tmp_path / "shard_00001.npy"
    p.write_bytes(p.read_bytes()[:500])
    store = ShardStore(tmp_path)
    assert store.get("0").shape == (3, 8, 8)
    assert _reason(store, "2") == "truncated"
    (tmp_path / "shard_00000.npy").unlink()
    assert _reason(ShardStore(tmp_path), "0") == "missing"


def test_shards_bounded_open_maps_and_pickle(tmp_path):
    import pickle

    with ShardWriter(tmp_path, 8, shard_size=1) as w:
        for i, a in enumerate(cutouts(10, 8)):
            w.add(str(i), a)
    store = ShardStore(tmp_path)
    for i in range(10):
        store.get(str(i), verify=True)
    assert len(store._maps) <= ShardStore.max_open
    clone = pickle.loads(pickle.dumps(store))
    assert len(clone._maps) == 0 and clone.get("3").shape == (3, 8, 8)


def test_open_store_errors(tmp_path):
    with pytest.raises(UserError, match="store.json"):
        open_store(tmp_path)
    (tmp_path / "store.json").write_text('{"format": "hdf5"}')
    with pytest.raises(UserError, match="npz, fits, shards"):
        open_store(tmp_path)


def test_read_readable_keeps_good_cutouts_and_each_bad_ones_reason(tmp_path):
    """A batch with a missing, a truncated, a non-finite and an off-size cutout: the good ones
    come back in key order, unchanged; each bad key has its reason and nothing stands in for it."""
    from dhs_data.stores import READABLE, read_readable

    pix = cutouts(6, 16, seed=3)
    keys = [f"g{i}.npz" for i in range(6)]
    for k, a in zip(keys, pix):
        write_npz(tmp_path / "c", k, a)
    write_store_json(tmp_path, format="npz", root="c", stamp=None)
    (tmp_path / "c" / keys[1]).unlink()
    (tmp_path / "c" / keys[2]).write_bytes(b"PK\x03\x04 not a whole zip")
    bad = pix[3].copy()
    bad[0, 2, 2] = np.inf
    write_npz(tmp_path / "c", keys[3], bad)
    write_npz(tmp_path / "c", keys[5], cutouts(1, 20)[0])  # another stamp size than the first readable one
    store = open_store(tmp_path)
    images, ok, status = read_readable(store, keys)
    assert ok.tolist() == [True, False, False, False, True, False]
    assert status[0] == status[4] == READABLE
    assert status[1] == "missing" and status[3] == "non_finite" and status[5] == "wrong_shape"
    assert status[2] in ("truncated", "unreadable")
    np.testing.assert_array_equal(images, pix[[0, 4]])
    # an all-good batch: one batched read, every key ok
    images, ok, status = read_readable(store, [keys[0], keys[4]])
    assert ok.all() and list(status) == [READABLE] * 2 and images.shape == (2, 3, 16, 16)
    # nothing readable
    images, ok, _ = read_readable(store, [keys[1]])
    assert images is None and not ok.any()
