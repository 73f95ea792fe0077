"""`dhs data annulus-compare` over a small npz data directory made here."""

import json

import numpy as np
import pyarrow as pa

from dhs_data.manifest import write_manifest
from dhs_data.stores import write_store_json


def _data_dir(tmp_path, n=40, stamp=64, host_scale=None):
    rng = np.random.default_rng(0)
    cut = tmp_path / "cutouts"
    cut.mkdir()
    yy, xx = np.mgrid[:stamp, :stamp] - (stamp - 1) / 2
    r = np.hypot(xx, yy)
    depth = rng.uniform(200, 2000, n)
    rows = []
    for i in range(n):
        sigma = 1 / np.sqrt(depth[i])
        img = rng.normal(0, sigma, (3, stamp, stamp)).astype(np.float32)
        if host_scale is not None:  # an extended host whose light reaches the inner annulus
            img += (0.5 * np.exp(-r / host_scale)).astype(np.float32)
        np.savez(cut / f"g{i}.npz", cutout=img)
        rows.append(dict(galaxy_id=f"g{i}", cutout_path=f"cutouts/g{i}.npz", ra=10 + 0.01 * i, dec=1.0,
                         label=0, psfsize_r=1.3, psfdepth_r=float(depth[i])))
    table = pa.Table.from_pylist(rows)
    write_manifest(table, tmp_path / "manifest.parquet")
    write_store_json(tmp_path, format="npz", root=".")
    return tmp_path, depth


def test_annulus_compare_command(tmp_path, capsys):
    from dhs_cli.main import main

    data_dir, depth = _data_dir(tmp_path, host_scale=6.0)
    out = tmp_path / "report.json"
    assert main(["data", "annulus-compare", str(data_dir), "--a", "10,16", "--b", "20,32", "--n", "40", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 40 and report["n_unreadable"] == 0 and report["annulus_a"] == [10.0, 16.0]
    # host light in the inner annulus: its medians differ from the outer annulus's (KS, scipy)
    assert report["bands"]["r"]["median_ks"]["pvalue"] < 1e-6
    # the outer annulus's MAD is sky noise: anti-correlated with psfdepth (inverse variance)
    rho = report["bands"]["r"]["mad_b_vs_psfdepth_r"]["rho"]
    assert rho < -0.8
    assert "median KS p" in capsys.readouterr().out


def test_bad_annulus_and_missing_manifest_exit_2(tmp_path, capsys):
    from dhs_cli.main import main

    assert main(["data", "annulus-compare", str(tmp_path), "--a", "ten,16"]) == 2
    assert "expected 'r_in,r_out'" in capsys.readouterr().err
    assert main(["data", "annulus-compare", str(tmp_path)]) == 2
    assert "no manifest.parquet" in capsys.readouterr().err
