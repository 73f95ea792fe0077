"""The data stage's inputs in the input hash, its disk estimate, full disks and directories it did not write."""

import errno

import pyarrow.parquet as pq
import pytest
from helpers import make_data_dir, manifest_dict

from dhs_core import run
from dhs_core.errors import StageError, UserError
from dhs_data.manifest import write_manifest
from dhs_data.sources.manifest_source import ManifestSourceConfig
from dhs_data.stage import DataStage


def _spec(tmp_path, manifest):
    return {"run": {"name": "t", "seed": 1, "out_dir": str(tmp_path / "run")},
            "data": {"name": "manifest", "path": str(manifest)}}


@pytest.fixture
def src(tmp_path):
    d, _ = make_data_dir(tmp_path / "src", 16, stamp=16, fmt="npz", splits=False)
    return d / "manifest.parquet"


def _ids(tmp_path):
    return sorted(pq.read_table(tmp_path / "run/data/manifest.parquet").column("galaxy_id").to_pylist())


def test_manifest_rewritten_in_place_reruns_the_data_stage(tmp_path, src):
    assert run(_spec(tmp_path, src)).stages["data"] == "ran"
    assert len(_ids(tmp_path)) == 16
    assert run(_spec(tmp_path, src)).stages["data"] == "skipped"
    # same path, other rows: the first 10 cutouts under new galaxy ids
    rows = manifest_dict(16)
    rows = {k: v[:10] for k, v in rows.items()}
    rows["galaxy_id"] = [f"new{i}" for i in range(10)]
    write_manifest(rows, src)
    assert run(_spec(tmp_path, src)).stages["data"] == "ran"
    assert _ids(tmp_path) == sorted(f"new{i}" for i in range(10))
    assert run(_spec(tmp_path, src)).stages["data"] == "skipped"


def test_fingerprint_covers_a_shard_index_not_every_cutout(tmp_path):
    d, _ = make_data_dir(tmp_path / "s", 8, stamp=8, fmt="shards")
    cfg = ManifestSourceConfig(path=str(d / "manifest.parquet"))
    first = cfg.fingerprint()
    assert set(first) == {"manifest", "store_json", "shard_index"} and "sha256" in first["shard_index"]
    index = d / "shards/index.parquet"
    index.write_bytes(index.read_bytes() + b"\0")
    assert cfg.fingerprint()["shard_index"] != first["shard_index"]
    missing = ManifestSourceConfig(path=str(tmp_path / "nope.parquet")).fingerprint()
    assert missing["manifest"]["missing"] is True


def test_estimate_bytes(tmp_path, src):
    from dhs_core.spec import load_spec

    spec = load_spec(_spec(tmp_path, src))[0].spec
    estimate = DataStage().estimate_bytes(spec)
    assert estimate is not None and estimate >= 2 * src.stat().st_size


def test_full_disk_while_writing_is_a_runtime_error_naming_the_path(tmp_path, src, monkeypatch):
    import dhs_data.manifest

    def full(data, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dhs_data.manifest, "write_manifest", full)
    with pytest.raises(StageError) as info:
        run(_spec(tmp_path, src))
    message = str(info.value)
    assert not isinstance(info.value, UserError) and info.value.exit_code == 1
    assert "the disk is full" in message and ".data.partial/manifest.parquet" in message and "\n" not in message
    assert not (tmp_path / "run/.data.partial").exists() and not (tmp_path / "run/data").exists()


def test_data_directory_dhs_did_not_write_is_refused_not_deleted(tmp_path, src):
    assert run(_spec(tmp_path, src)).stages["data"] == "ran"
    data = tmp_path / "run/data"
    assert (data / ".dhs-data").is_file()
    # the user replaces the data directory with their own files
    import shutil

    shutil.rmtree(data)
    data.mkdir()
    (data / "important.txt").write_text("keep me")
    write_manifest({k: v[:12] for k, v in manifest_dict(16).items()}, src)  # so the stage reruns
    with pytest.raises(UserError, match="not a data directory dhs wrote"):
        run(_spec(tmp_path, src))
    assert (data / "important.txt").read_text() == "keep me"
    assert not (tmp_path / "run/.data.partial").exists()
    # a symbolic link in its place is neither followed nor removed
    shutil.rmtree(data)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "important.txt").write_text("keep me too")
    data.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError, match="symbolic link"):
        run(_spec(tmp_path, src))
    assert (outside / "important.txt").read_text() == "keep me too" and data.is_symlink()
    # an empty directory, or one dhs wrote, is replaced
    data.unlink()
    data.mkdir()
    assert run(_spec(tmp_path, src)).stages["data"] == "ran"
    assert len(_ids(tmp_path)) == 12


def test_manifest_source_pointing_at_shards_without_index_is_a_usage_error(tmp_path):
    d, _ = make_data_dir(tmp_path / "s", 8, stamp=8, fmt="shards")
    (d / "shards/index.parquet").unlink()
    with pytest.raises(UserError, match="index.parquet does not exist"):
        run(_spec(tmp_path, d / "manifest.parquet"))
