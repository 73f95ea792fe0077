import json

import numpy as np
import pytest
from helpers import make_data_dir, manifest_dict

from dhs_core.errors import UserError
from dhs_data.manifest import read_manifest, write_manifest
from dhs_data.pack import pack
from dhs_data.stores import open_store, write_fits, write_npz

typer = pytest.importorskip("typer")


def test_pack_npz_to_shards_verified(tmp_path):
    d, pix = make_data_dir(tmp_path / "src", 25, stamp=16)
    ticks = []
    summary = pack(d / "manifest.parquet", tmp_path / "out", shard_size=10, advance=ticks.append)
    assert summary["verified"] and summary["n_packed"] == 25 and sum(ticks) == 50
    store = open_store(tmp_path / "out")
    assert store.format == "shards"
    m = read_manifest(tmp_path / "out/manifest.parquet")
    for key, gid in zip(m.column("cutout_path").to_pylist(), m.column("galaxy_id").to_pylist()):
        np.testing.assert_array_equal(store.get(key), pix[int(gid[1:])])
    assert len(list((tmp_path / "out/shards").glob("shard_*.npy"))) == 3


def _corrupt(d):
    p = d / "cutouts/c/g0003.npz"
    p.write_bytes(p.read_bytes()[:50])


def test_corrupt_npz_fails_without_output_or_skips(tmp_path):
    d, _ = make_data_dir(tmp_path / "src", 10, stamp=16)
    _corrupt(d)
    with pytest.raises(UserError, match="g0003.npz: truncated"):
        pack(d / "manifest.parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    summary = pack(d / "manifest.parquet", tmp_path / "out", skip_bad=True)
    assert summary["n_packed"] == 9 and summary["excluded"][0]["reason"] == "truncated"
    assert json.loads((tmp_path / "out/pack_report.json").read_text())["n_packed"] == 9


def test_fits_with_two_planes_and_nan_refused(tmp_path):
    m = manifest_dict(3, ext="fits")
    pix = np.zeros((3, 16, 16), np.float32)
    write_fits(tmp_path / "src", m["cutout_path"][0], pix)
    write_fits(tmp_path / "src", m["cutout_path"][1], pix[:2], bands="gr")
    nan = pix.copy()
    nan[2, 1, 1] = np.nan
    write_fits(tmp_path / "src", m["cutout_path"][2], nan)
    write_manifest(m, tmp_path / "src/manifest.parquet")
    with pytest.raises(UserError) as exc:
        pack(tmp_path / "src/manifest.parquet", tmp_path / "out")
    assert "wrong_shape" in str(exc.value) and "non_finite" in str(exc.value)
    assert not (tmp_path / "out").exists()


def test_escape_and_nonempty_out_refused(tmp_path):
    m = manifest_dict(2)
    m["cutout_path"][1] = "../x.npz"
    write_npz(tmp_path / "src", m["cutout_path"][0], np.zeros((3, 8, 8), np.float32))
    write_manifest(m, tmp_path / "src/manifest.parquet")
    with pytest.raises(UserError, match="outside the data root"):
        pack(tmp_path / "src/manifest.parquet", tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        pack(tmp_path / "src/manifest.parquet", tmp_path / "full")


def test_cli_group_shared_and_exit_codes(tmp_path):
    from typer.testing import CliRunner

    from dhs_data.cli import data_group, register

    app = typer.Typer()
    other = typer.Typer()
    app.add_typer(other, name="data")  # another package created the group first
    register(app)
    assert data_group(app) is other and [g.name for g in app.registered_groups] == ["data"]

    @app.callback()
    def _root():
        pass

    d, _ = make_data_dir(tmp_path / "src", 6, stamp=16)
    res = CliRunner().invoke(app, ["data", "pack", str(d / "manifest.parquet"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "copy verified" in res.output
    dhs_cli = pytest.importorskip("dhs_cli.main")
    code = dhs_cli.main(["data", "pack", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o2")])
    assert code == 2
    assert dhs_cli.main(["data", "pack", str(d / "manifest.parquet"), "--out", str(tmp_path / "o3")]) == 0
