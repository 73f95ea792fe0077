"""Integrity of stored cutouts on read: checksums, damaged stores, full disks."""

import errno
import pickle

import numpy as np
import pytest
from helpers import cutouts, make_data_dir

from dhs_core.errors import DataIntegrityError, UserError
from dhs_data.stores import CutoutError, ShardStore, ShardWriter, open_store, write_fits, write_npz
from dhs_data.stores.fits import FitsStore
from dhs_data.stores.npz import NpzStore


def xor_middle(path, n=4096, pattern=0x01):
    """Flip the lowest bit of every byte of ``n`` bytes in the middle of ``path`` (a float32
    mantissa/exponent bit: the pixels change but stay finite)."""
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    for i in range(mid, mid + n):
        raw[i] ^= pattern
    path.write_bytes(bytes(raw))
    return mid


def _shards(root, n=6, stamp=16, shard_size=3):
    pix = cutouts(n, stamp)
    with ShardWriter(root, stamp, shard_size=shard_size) as w:
        for i, a in enumerate(pix):
            w.add(f"k{i}", a)
    return pix


def test_shard_checksum_mismatch_is_a_checksum_error_on_read(tmp_path):
    pix = _shards(tmp_path, n=6, stamp=16, shard_size=6)
    xor_middle(tmp_path / "shard_00000.npy", n=4096)
    unchecked = ShardStore(tmp_path, verify="never")
    changed = [k for i, k in enumerate(unchecked.keys()) if not np.array_equal(unchecked.get(k), pix[i])]
    assert changed and all(np.isfinite(unchecked.get(k)).all() for k in changed)  # damage stays finite
    store = ShardStore(tmp_path)
    for key in changed:
        with pytest.raises(CutoutError) as info:
            store.get(key)
        assert info.value.reason == "checksum"
    with pytest.raises(CutoutError) as info:
        ShardStore(tmp_path).get_many(store.keys())
    assert info.value.reason == "checksum" and info.value.key in changed
    # undamaged cutouts still read, and verify() lists exactly the damaged ones
    intact = [k for k in store.keys() if k not in changed]
    assert np.array_equal(store.get_many(intact), pix[[int(k[1:]) for k in intact]])
    bad = ShardStore(tmp_path).verify()
    assert sorted(e.key for e in bad) == sorted(changed) and {e.reason for e in bad} == {"checksum"}


def test_verify_modes_and_verified_pages_travel_with_the_pickled_store(tmp_path):
    _shards(tmp_path)
    store = ShardStore(tmp_path)
    assert store.verify(["k0", "k1", "nope"])[0].reason == "missing"
    assert store._verified[[0, 1]].all() and not store._verified[2:].any()
    clone = pickle.loads(pickle.dumps(store))  # what a loader worker receives
    assert clone._verified[[0, 1]].all()
    with pytest.raises(ValueError, match="first-read"):
        ShardStore(tmp_path, verify="sometimes")


def test_shard_store_without_or_with_unreadable_index_is_a_data_integrity_error(tmp_path):
    d, _ = make_data_dir(tmp_path / "d", 8, stamp=8, fmt="shards")
    index = d / "shards/index.parquet"
    index.write_bytes(b"not parquet")
    with pytest.raises(DataIntegrityError, match="index.parquet is unreadable"):
        open_store(d)
    index.unlink()
    with pytest.raises(DataIntegrityError, match="index.parquet is missing"):
        open_store(d)
    # a data directory whose store.json is gone is damaged too; a directory that never was one is a usage error
    (d / "store.json").unlink()
    with pytest.raises(DataIntegrityError, match="no store.json"):
        open_store(d)
    with pytest.raises(UserError):
        open_store(tmp_path / "empty")


def test_npz_zip_crc_mismatch_is_a_checksum_error(tmp_path):
    a = cutouts(1, 16)[0]
    path = write_npz(tmp_path, "x.npz", a)
    raw = bytearray(path.read_bytes())
    at = raw.find(a.tobytes()[:64]) + 100
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CutoutError) as info:
        NpzStore(tmp_path).get("x.npz")
    assert info.value.reason == "checksum"


def test_fits_datasum_mismatch_is_a_checksum_error(tmp_path):
    a = cutouts(1, 16)[0]
    path = write_fits(tmp_path, "x.fits", a)
    assert np.array_equal(FitsStore(tmp_path).get("x.fits"), a)
    raw = bytearray(path.read_bytes())
    raw[2880 + 3] ^= 0x01  # lowest mantissa bit of the first (big-endian) pixel
    path.write_bytes(bytes(raw))
    with pytest.raises(CutoutError) as info:
        FitsStore(tmp_path).get("x.fits")
    assert info.value.reason == "checksum"


def test_shard_writer_full_disk_raises_enospc_naming_the_shard_and_leaves_no_partial(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class FullDisk:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            self.written += len(memoryview(data).cast("B"))
            if self.written > 20000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullDisk(fh) if str(path).endswith(".npy.partial") else fh

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as info:
        with ShardWriter(tmp_path / "s", 16, shard_size=8) as w:
            for i, a in enumerate(cutouts(8, 16)):
                w.add(f"k{i}", a)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("shard_00000.npy.partial")
    assert not list((tmp_path / "s").iterdir())


def test_shard_writer_writes_plain_npy_without_memory_maps(tmp_path, monkeypatch):
    # a writable memory map turns a full disk into SIGBUS; the writer must not create one
    def refuse(*args, **kwargs):
        raise AssertionError("ShardWriter must not write through a memory map")

    monkeypatch.setattr(np.lib.format, "open_memmap", refuse)
    monkeypatch.setattr(np, "memmap", refuse)
    pix = _shards(tmp_path, n=7, stamp=8, shard_size=3)
    monkeypatch.undo()  # reading maps the shards read-only
    store = ShardStore(tmp_path)
    assert np.array_equal(store.get_many(store.keys()), pix)
    assert np.load(tmp_path / "shard_00002.npy").shape == (1, 3, 8, 8)
    assert store.verify() == []


def _damaged_shard_data_dir(tmp_path):
    d, pix = make_data_dir(tmp_path / "d", 24, stamp=16, fmt="shards")
    xor_middle(d / "shards/shard_00000.npy", n=4096)
    return d, pix


def test_dataset_over_a_damaged_shard_store_stops_when_opened(tmp_path):
    from dhs_data.datasets import CutoutDataset

    d, _ = _damaged_shard_data_dir(tmp_path)
    with pytest.raises(DataIntegrityError) as info:
        CutoutDataset(d, split="train")
    message = str(info.value)
    assert "\n" not in message and "checksum" in message and f"dhs data verify {d}" in message
    assert "shard_00000.npy" in message  # the damaged file is named
    # verification when opened can be turned off explicitly; the store still checks each first read
    unchecked = CutoutDataset(d, split="train", verify=False)
    with pytest.raises(DataIntegrityError, match="checksum"):
        [unchecked[i] for i in range(len(unchecked))]
    with pytest.raises(DataIntegrityError, match="checksum"):
        unchecked.__getitems__(list(range(len(unchecked))))


def test_dataset_over_a_missing_shard_or_npz_file_is_a_data_integrity_error(tmp_path):
    from dhs_data.datasets import CutoutDataset

    d, _ = make_data_dir(tmp_path / "s", 24, stamp=8, fmt="shards")
    (d / "shards/shard_00001.npy").unlink()
    with pytest.raises(DataIntegrityError, match="missing"):
        CutoutDataset(d, split=None)
    d, _ = make_data_dir(tmp_path / "n", 8, stamp=8, fmt="npz")
    (d / "cutouts/c/g0000.npz").unlink()
    with pytest.raises(DataIntegrityError, match="g0000"):
        CutoutDataset(d, split="train")
    (d / "manifest.parquet").write_bytes(b"garbage")
    with pytest.raises(DataIntegrityError, match="manifest"):
        CutoutDataset(d, split="train")


def _cli():
    import typer

    from dhs_data.cli import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root():
        pass

    return app


def test_verify_command_clean_damaged_and_not_a_data_dir(tmp_path):
    from typer.testing import CliRunner

    from dhs_data.integrity import verify_data_dir

    app = _cli()
    d, _ = make_data_dir(tmp_path / "d", 24, stamp=16, fmt="shards")
    res = CliRunner().invoke(app, ["data", "verify", str(d)])
    assert res.exit_code == 0 and "clean" in res.output and "24 cutouts" in res.output
    xor_middle(d / "shards/shard_00000.npy", n=4096)
    (d / "shards/shard_00003.npy").unlink()
    res = CliRunner().invoke(app, ["data", "verify", str(d), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 1 and "DAMAGED" in res.output and "checksum" in res.output
    report = verify_data_dir(d)
    assert report["by_reason"]["missing"] == 3 and report["by_reason"]["shard_missing"] == 1
    assert report["by_reason"]["checksum"] >= 1
    (d / "shards/index.parquet").unlink()
    assert verify_data_dir(d)["by_reason"] == {"index_missing": 1}
    # npz: manifest rows without cutouts, truncated files
    n, _ = make_data_dir(tmp_path / "n", 6, stamp=8, fmt="npz")
    (n / "cutouts/c/g0001.npz").unlink()
    p = n / "cutouts/c/g0002.npz"
    p.write_bytes(p.read_bytes()[:60])
    report = verify_data_dir(n)
    assert report["by_reason"] == {"missing": 1, "truncated": 1} and not report["clean"]
    (tmp_path / "plain").mkdir()
    dhs_cli = pytest.importorskip("dhs_cli.main")
    assert dhs_cli.main(["data", "verify", str(tmp_path / "plain")]) == 2
    assert dhs_cli.main(["data", "verify", str(n)]) == 1
    assert dhs_cli.main(["data", "verify", str(d)]) == 1
