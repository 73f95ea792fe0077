"""Synthetic survey: determinism, population counts, noise, PSF, host flux, pipeline and gallery."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.optimize import curve_fit
from scipy.special import gammainc, gammaincinv

from dhs_core import plugins
from dhs_data.preprocess.annulus import MAD_TO_SIGMA
from dhs_inject.synthetic import scenes as sc
from dhs_inject.synthetic.catalog import build_catalog, population_counts
from dhs_inject.synthetic.config import SyntheticConfig
from dhs_inject.synthetic.render import render_chunk
from dhs_inject.synthetic.source import generate

PIX = 0.262
BETA = 3.5


def _isolated(cfg, seed, n, scene=sc.N1_FIELD):
    """Catalog rows with no neighbours, stars or extra features (only what the test puts in)."""
    cat = {k: v[:n].copy() for k, v in build_catalog(cfg, seed).items()}
    cat["scene"][:] = scene
    cat["feature"][:] = scene
    for key in ("nb_flux", "star_flux"):
        cat[key][:] = 0.0
    return cat


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    cfg = SyntheticConfig(n_hosts=24, positive_fraction=0.25, chunk_size=10)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(cfg, seed, tmp_path / name)
    read = lambda d, f: (tmp_path / d / f).read_bytes()  # noqa: E731
    for f in ("manifest.parquet", "truth.parquet", "shards/shard_00000.npy"):
        assert read("a", f) == read("b", f)
    assert read("a", "shards/shard_00000.npy") != read("c", "shards/shard_00000.npy")
    assert read("a", "manifest.parquet") != read("c", "manifest.parquet")


def test_counts_follow_the_config():
    cfg = SyntheticConfig(n_hosts=2820, positive_fraction=0.1, n2_fraction=0.2, tier_a_fraction=0.25,
                          label_noise_fraction=0.1, hidden_lens_rate=0.002,
                          confuser_mix={"ring_proxy": 2, "spiral": 1, "merger": 1})
    lab = sc.manifest_labels(build_catalog(cfg, 3)["scene"])
    # 282 positives: 70 A + 212 B (21 of them label noise); 2538 negatives: 508 N2, 2030 N1 (5 hidden)
    assert (lab["label"] == 1).sum() == 282
    assert (lab["tier"] == "A").sum() == 70 and (lab["tier"] == "B").sum() == 212
    assert ((lab["tier"] == "B") & ~lab["is_lens"]).sum() == 21
    assert (lab["pool"] == "N2").sum() == 508 and (lab["pool"] == "N1").sum() == 2030
    assert ((lab["pool"] == "N1") & lab["is_lens"]).sum() == 5
    cats = lab["confuser_category"]
    assert [(cats == c).sum() for c in ("ring_proxy", "spiral", "merger", "edge_on_proxy")] == [254, 127, 127, 0]
    assert sum(population_counts(cfg).values()) == 2820


def _moffat_alpha_px(fwhm_arcsec):
    return fwhm_arcsec / PIX / (2 * math.sqrt(2 ** (1 / BETA) - 1))


def test_empty_sky_noise_matches_psfdepth():
    cfg = SyntheticConfig(n_hosts=20, stamp=64)
    cat = _isolated(cfg, 1, 20)
    cat["host_flux"][:] = 0.0
    images, _ = render_chunk(cat, stamp=64, beta=BETA, seed=1)
    scale = np.array([1.05, 1.0, 0.94])
    for band, depth in enumerate((cat["psfdepth_g"], cat["psfdepth_r"], cat["psfdepth_z"])):
        # closed form: noise-equivalent area of a Moffat, pi alpha^2 (2 beta - 1) / (beta - 1)^2
        alpha = _moffat_alpha_px(cat["psfsize_r"] * scale[band])
        nea = math.pi * alpha**2 * (2 * BETA - 1) / (BETA - 1) ** 2
        expected = 1.0 / np.sqrt(depth * nea)
        pix = images[:, band].reshape(20, -1)
        mad = MAD_TO_SIGMA * np.median(np.abs(pix - np.median(pix, 1, keepdims=True)), 1)
        np.testing.assert_allclose(mad, expected, rtol=0.10)


def _moffat2d(xy, amp, x0, y0, alpha, beta):
    x, y = xy
    return amp * (1 + ((x - x0) ** 2 + (y - y0) ** 2) / alpha**2) ** (-beta)


def test_star_fwhm_matches_psfsize():
    cfg = SyntheticConfig(n_hosts=6, stamp=64)
    cat = _isolated(cfg, 2, 6)
    cat["host_flux"][:] = 0.0
    cat["star_flux"][:, 0, :] = 10 ** ((22.5 - 17.0) / 2.5)  # bright star, offset from the pixel grid
    cat["star_x"][:, 0], cat["star_y"][:, 0] = 0.13, -0.4
    images, _ = render_chunk(cat, stamp=64, beta=BETA, seed=2)
    y, x = np.mgrid[:64, :64].astype(float)
    for i in range(6):
        for band, scale in enumerate((1.05, 1.0, 0.94)):
            img = images[i, band]
            p, _ = curve_fit(_moffat2d, (x.ravel(), y.ravel()), img.ravel(),
                             p0=(img.max(), 32, 30, 4.0, 3.0))
            fwhm = 2 * abs(p[3]) * math.sqrt(2 ** (1 / p[4]) - 1) * PIX
            assert fwhm == pytest.approx(cat["psfsize_r"][i] * scale, rel=0.10)


@pytest.mark.parametrize("n_sersic,q", [(4.0, 1.0), (4.0, 0.6), (1.0, 0.5), (2.5, 0.8)])
def test_host_flux_matches_catalog_magnitude(n_sersic, q):
    cfg = SyntheticConfig(n_hosts=4, stamp=101)
    cat = _isolated(cfg, 4, 4)
    cat["host_n"][:], cat["host_q"][:], cat["host_r_e"][:] = n_sersic, q, np.array([0.5, 0.9, 1.3, 0.35])
    images, _ = render_chunk(cat, stamp=101, beta=BETA, seed=4, noise=False)
    radius = 12.0  # arcsec, aperture inside the 101-px stamp
    y, x = (np.mgrid[:101, :101] - 50) * PIX
    aperture = np.hypot(x, y) < radius
    b = gammaincinv(2 * n_sersic, 0.5)
    for i in range(4):
        # closed form (scipy): a circle of radius R holds the isophotes of elliptical radius
        # < R sqrt(q) and lies inside those < R / sqrt(q); for q = 1 the bounds coincide
        lower, upper = (gammainc(2 * n_sersic, b * (radius * f / cat["host_r_e"][i]) ** (1 / n_sersic))
                        for f in (math.sqrt(q), 1 / math.sqrt(q)))
        # the catalog's observed r magnitude: intrinsic + A_r = 2.165 E(B-V)
        mag_r = cat["host_mag_r"][i] + 2.165 * cat["ebv"][i]
        catalog_flux = 10 ** ((22.5 - mag_r) / 2.5)
        measured = images[i, 1][aperture].sum()
        assert catalog_flux * lower * 0.95 <= measured <= catalog_flux * upper * 1.05


def test_pipeline_writes_a_valid_manifest_store_and_truth(tmp_path):
    import dhs_core
    from dhs_data.manifest import read_manifest
    from dhs_data.stores import open_store

    spec = {"run": {"name": "syn", "seed": 1, "out_dir": str(tmp_path / "run")},
            "data": {"name": "synthetic", "n_hosts": 120, "positive_fraction": 0.2}}
    result = dhs_core.run(spec)
    data = result.run_dir / "data"
    manifest = read_manifest(data / "manifest.parquet")  # validates against dhs_data.manifest.SCHEMA
    assert manifest.num_rows == 120
    assert set(manifest.column("split").to_pylist()) <= {"train", "val", "test"}
    assert len(set(manifest.column("healpix_128").to_pylist())) > 20
    assert "theta_e" not in manifest.column_names and "is_lens" not in manifest.column_names
    truth = pq.read_table(data / "truth.parquet")
    assert truth.column("galaxy_id").to_pylist() == manifest.column("galaxy_id").to_pylist()
    store = open_store(data)
    cutout = store.get(manifest.column("cutout_path")[0].as_py())
    assert cutout.shape == (3, 64, 64) and cutout.dtype == np.float32
    # the disk estimate the runner checks free space against is an upper bound of what was written
    from dhs_core.spec import load_spec
    from dhs_data.stage import DataStage

    written = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    estimate = DataStage().estimate_bytes(load_spec(spec)[0].spec)
    assert written <= estimate <= 3 * written + (8 << 20)


def test_registered_data_sources_of_dhs_inject_have_valid_default_configs():
    mine = {n: c for n, c in plugins.components("data_source").items() if c.distribution == "dhs-inject"}
    assert "synthetic" in mine
    for comp in mine.values():
        cfg = comp.make_config()
        assert callable(comp.impl) and hasattr(cfg, "split")


def test_data_show_writes_a_gallery(tmp_path):
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from dhs_inject.synthetic.gallery import register_show_command

    generate(SyntheticConfig(n_hosts=40, positive_fraction=0.3), 7, tmp_path / "data")
    app = typer.Typer()
    register_show_command(app)
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(app, ["data", "show", str(tmp_path / "data" / "manifest.parquet"), "--n", "12",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
