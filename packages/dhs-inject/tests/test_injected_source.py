"""The ``injected`` data source: injection-built training sets (Gen1 / Gen2 protocol)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from dhs_core import plugins, run
from dhs_core.errors import SpecError
from dhs_data.stores import open_store
from dhs_inject.grids import assign_configs, build_injection_manifest, grid_configs, hash_uniform

INJECTOR = {"name": "model1", "supersample": 1, "fast_kernel": False,
            "prior": {"src_n": [1, 1], "clump_prob": 0.0}}
HOSTS = {"name": "synthetic", "n_hosts": 100, "stamp": 64, "positive_fraction": 0.1}


def spec(out, **data):
    return {"run": {"name": "inj", "seed": 3, "out_dir": str(out)},
            "data": {"name": "injected", "hosts": HOSTS, "injector": INJECTOR, "grid": "grid_small",
                     "chunk_size": 16, **data}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("inj") / "run"
    res = run(spec(out))
    return res, out / "data"


def _table(path):
    return pq.read_table(path).to_pydict()


def test_manifest_truth_and_store_of_an_unpaired_set(built):
    res, data = built
    assert res.stages["data"] == "ran"
    manifest, truth = _table(data / "manifest.parquet"), _table(data / "truth.parquet")
    summary = json.loads((data / "injected.json").read_text())
    label = np.asarray(manifest["label"])
    assert summary["n_injections"] == int(label.sum()) > 0 and summary["n_controls"] == int((label == 0).sum()) > 0
    # unpaired: controls and injected hosts are different galaxies, and every host is a non-lens
    t = {g: i for i, g in enumerate(truth["galaxy_id"])}
    host_of = [truth["host_id"][t[g]] for g in manifest["galaxy_id"]]
    injected_hosts = {h for h, lab in zip(host_of, label) if lab == 1}
    controls = {h for h, lab in zip(host_of, label) if lab == 0}
    assert not injected_hosts & controls
    assert not list((res.run_dir / ".dhs" / "work").glob("injected-*"))  # removed once the set is written
    # a host and all its injections share a split (HEALPix of the host's position)
    split_of_host = {}
    for h, sp in zip(host_of, manifest["split"]):
        assert split_of_host.setdefault(h, sp) == sp
    # every injection's configuration is a grid_small row and its drawn parameters follow it
    grid = grid_configs("grid_small")
    for i in range(len(truth["galaxy_id"])):
        if not truth["is_injection"][i]:
            assert truth["config_id"][i] == -1 and np.isnan(truth["arc_snr"][i])
            continue
        cid = truth["config_id"][i]
        assert truth["theta_e"][i] == pytest.approx(grid["theta_e"][cid])
        assert truth["src_r_e"][i] == pytest.approx(grid["src_reff"][cid])
        e = grid["src_e"][cid]
        assert truth["src_q"][i] == pytest.approx((1 - e) / (1 + e))
        assert truth["gamma_ext"][i] == pytest.approx(grid["shear"][cid])
        assert truth["src_n"][i] == 1.0 and truth["n_clumps"][i] == 0
        # src_dmag: the source is that much fainter than its host's aperture magnitude
        assert truth["src_r_mag"][i] == pytest.approx(truth["host_mag_r"][i] + grid["src_dmag"][cid])
    store = open_store(data)
    assert store.get(manifest["cutout_path"][0]).shape == (3, 64, 64)


def test_host_magnitude_is_the_aperture_flux(built):
    from dhs_inject.injected.source import aperture_magnitude_r

    res, data = built
    manifest = _table(data / "manifest.parquet")
    ctrl = [g for g, lab in zip(manifest["galaxy_id"], manifest["label"]) if lab == 0][:5]
    img = open_store(data).get_many(ctrl)
    yy, xx = np.mgrid[0:64, 0:64]
    inside = (xx - 31.5) ** 2 + (yy - 31.5) ** 2 <= 30.0 ** 2
    expected = 22.5 - 2.5 * np.log10(img[:, 1][:, inside].sum(axis=1))
    assert np.allclose(aperture_magnitude_r(img, 30.0), expected)
    assert np.isnan(aperture_magnitude_r(np.zeros((1, 3, 64, 64)), 30.0)).all()


def test_resolvability_table_and_min_theta_over_psf(tmp_path):
    res = run(spec(tmp_path / "r", min_theta_over_psf=0.5, grid={
        "theta_e": [0.3, 1.0], "src_dmag": [1.0], "src_reff": [0.1], "src_e": [0.0], "shear": [0.0]},
        configs_per_host="all"))
    data = res.run_dir / "data"
    table = _table(data / "injection_configs.parquet")
    truth = _table(data / "truth.parquet")
    manifest = _table(data / "manifest.parquet")
    psf = dict(zip(manifest["galaxy_id"], manifest["psfsize_r"]))
    # every stored injection resolves theta_E / PSF >= 0.5; the dropped pairs are the others
    for g, inj, theta in zip(truth["galaxy_id"], truth["is_injection"], truth["theta_e"]):
        if inj:
            assert theta / psf[g] >= 0.5
    # theta_E = 0.3" is below half of any synthetic PSF (FWHM > 0.6"): all of its pairs dropped
    assert table["theta_e"] == [0.3, 1.0]
    assert table["n_dropped_min_theta_over_psf"][0] == table["n_planned"][0] > 0
    assert table["frac_theta_over_psf_lt_0p5"][0] == 1.0 and table["n_ok"][0] == 0
    assert table["n_ok"][1] + table["n_failed"][1] + table["n_dropped_min_theta_over_psf"][1] == table["n_planned"][1]
    summary = json.loads((data / "injected.json").read_text())
    assert summary["n_dropped_min_theta_over_psf"] == table["n_dropped_min_theta_over_psf"][0] + \
        table["n_dropped_min_theta_over_psf"][1]


def test_paired_controls_need_the_flag_and_pair_every_injected_host(tmp_path):
    with pytest.raises(SpecError, match="paired_controls"):
        run(spec(tmp_path / "x", controls="paired"))
    assert not (tmp_path / "x").exists()
    res = run(spec(tmp_path / "p", controls="paired", split={"paired_controls": True}))
    data = res.run_dir / "data"
    truth = _table(data / "truth.parquet")
    injected_hosts = {h for h, inj in zip(truth["host_id"], truth["is_injection"]) if inj}
    controls = {h for h, inj in zip(truth["host_id"], truth["is_injection"]) if not inj}
    assert injected_hosts and injected_hosts <= controls
    report = json.loads((data / "data_report.json").read_text())
    assert report["paired_controls_allowed"] is True
    # injected minus its own host is the arc alone: its r flux is the source's unlensed flux at
    # m = host magnitude + src_dmag (nanomaggies, zero point 22.5) times the magnification, the
    # PSF conserving flux (theta_E <= 1": the images lie well inside the 16.8" stamp)
    store = open_store(data)
    checked = 0
    for i, g in enumerate(truth["galaxy_id"]):
        if not truth["is_injection"][i] or truth["theta_e"][i] > 1.0:
            continue
        arc = store.get(g).astype(np.float64) - store.get(truth["host_id"][i]).astype(np.float64)
        source_flux = 10 ** (-0.4 * (truth["src_r_mag"][i] - 22.5))
        assert arc[1].sum() == pytest.approx(source_flux * truth["magnification"][i], rel=0.02)
        checked += 1
    assert checked > 0


def test_a_killed_run_resumes_with_the_unfinished_tasks(tmp_path, monkeypatch):
    from dhs_inject.injected import source

    real = source.run_task
    calls = []

    def dies_on_third(task):
        calls.append(task.output)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(task)

    monkeypatch.setattr(source, "run_task", dies_on_third)
    with pytest.raises(Exception, match="killed"):
        run(spec(tmp_path / "k"))
    finished = {p.name for p in (tmp_path / "k" / ".dhs" / "work").glob("*/tasks/*.npz")}
    assert len(finished) == 2
    calls.clear()
    monkeypatch.setattr(source, "run_task", lambda t: (calls.append(t.output), real(t))[1])
    res = run(spec(tmp_path / "k"))
    assert res.stages["data"] == "ran"
    assert not finished & {p.rsplit("/", 1)[-1] for p in calls}  # finished tasks were not redone
    # and the set equals one built in a single go
    once = run(spec(tmp_path / "once"))
    a, b = _table(res.run_dir / "data" / "truth.parquet"), _table(once.run_dir / "data" / "truth.parquet")
    assert a["galaxy_id"] == b["galaxy_id"] and np.allclose(a["arc_snr"], b["arc_snr"], equal_nan=True)


@pytest.mark.parametrize("bad, match", [
    ({"grid": "grid_huge"}, "grid_small, grid_sota"),
    ({"grid": {"theta_e": [1.0], "src_dmag": [25.0], "src_reff": [0.1], "src_e": [0.0], "shear": [0.0]}},
     "src_dmag"),
    ({"grid": {"theta_e": [1.0]}}, "missing"),
    ({"hosts": None}, "exactly one of hosts"),
    ({"hosts_dir": "/x"}, "exactly one of hosts"),
    ({"configs_per_host": 0}, "configs_per_host"),
    ({"hosts": {"name": "injected", "hosts_dir": "/x"}}, "cannot be another"),
])
def test_bad_configs_are_spec_errors(bad, match, tmp_path):
    with pytest.raises((SpecError, ValidationError), match=match):
        run(spec(tmp_path / "x", **bad))
    assert not (tmp_path / "x").exists()


def test_hosts_dir_that_is_not_a_data_directory(tmp_path):
    from dhs_core.errors import UserError

    data = {"hosts": None, "hosts_dir": str(tmp_path)}
    with pytest.raises(UserError, match="manifest.parquet"):
        run(spec(tmp_path / "x", **data))


def test_config_assignment_is_population_independent_and_spread():
    ids = [f"g{i}" for i in range(400)]
    a = assign_configs(ids, 48, 3, seed=7)
    b = assign_configs(ids[::-1][:200], 48, 3, seed=7)
    assert np.array_equal(a[::-1][:200], b)  # a host's configs do not depend on the others
    assert a.shape == (400, 3) and all(len(set(row)) == 3 for row in a.tolist())
    counts = np.bincount(a.reshape(-1), minlength=48)
    assert counts.min() > 0  # every configuration used
    man = build_injection_manifest(ids, grid_configs("grid_small"), control_frac=0.5, seed=7, configs_per_host=2)
    n_inj = int((hash_uniform(ids, 7) >= 0.5).sum())
    assert int(man["label"].sum()) == 2 * n_inj and int((man["label"] == 0).sum()) == len(ids) - n_inj


def test_registered_with_its_config():
    comp = plugins.get("data_source", "injected")
    assert comp.distribution == "dhs-inject"
    cfg = comp.Config(hosts_dir="/somewhere")
    assert cfg.grid == "grid_small" and cfg.controls == "unpaired"
