import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import make_data_dir, manifest_dict

from dhs_core import Stage, hookimpl, io, run
from dhs_core.errors import SpecError, UserError
from dhs_core.runner import plan
from dhs_core.testing import registered
from dhs_data.datasets import CutoutDataset
from dhs_data.manifest import write_manifest
from dhs_data.splits import assign_splits
from dhs_data.stores import write_npz


def _spec(tmp_path, data, **extra):
    return {"run": {"name": "t", "seed": 1, "out_dir": str(tmp_path / "run")}, "data": data, **extra}


@pytest.fixture
def src(tmp_path):
    d, pix = make_data_dir(tmp_path / "src", 60, stamp=32, fmt="npz", splits=False)
    return d, pix


def test_manifest_source_end_to_end(tmp_path, src):
    d, pix = src
    # damage three cutouts: each must be excluded and counted with its reason, never zero-filled
    (d / "cutouts/c/g0001.npz").unlink()
    p = d / "cutouts/c/g0002.npz"
    p.write_bytes(p.read_bytes()[:100])
    bad = pix[3].copy()
    bad[0, 5, 5] = np.nan
    write_npz(d / "cutouts", "c/g0003.npz", bad)
    res = run(_spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")},
                    preprocess={"name": "raw_robust", "annulus": [10, 16]}))
    data = res.run_dir / "data"
    report = json.loads((data / "data_report.json").read_text())
    assert report["exclusions"]["by_reason"] == {"missing": 1, "truncated": 1, "non_finite": 1}
    assert report["n_kept"] == 57 and res.metrics["data.n_excluded"] == 3
    m = pq.read_table(data / "manifest.parquet")
    assert m.num_rows == 57 and not {"g0001", "g0002", "g0003"} & set(m.column("galaxy_id").to_pylist())
    want = assign_splits(m.column("ra").to_numpy(), m.column("dec").to_numpy(), nside=128, seed=42,
                         fractions={"train": 0.7, "val": 0.15, "test": 0.15})
    assert m.column("split").to_pylist() == want.tolist()
    v = report["split_verification"]
    assert all(n == 0 for n in v["shared_pixels"].values()) and "psfsize_r" in v["ks_balance"]
    total = sum(r["count"] for r in report["by_stratum"])
    assert total == 57
    ds = CutoutDataset(data, split="train")
    assert len(ds) == report["by_split"]["train"]["n"]
    assert not (tmp_path / "run/.data.partial").exists()
    # rerun with the same inputs is skipped (resume)
    assert run(_spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")},
                     preprocess={"name": "raw_robust", "annulus": [10, 16]})).stages["data"] == "skipped"


def _expect_no_output(tmp_path, spec, match):
    with pytest.raises(UserError, match=match):
        run(spec)
    assert not (tmp_path / "run/data").exists() and not (tmp_path / "run/.data.partial").exists()


def test_escape_refused_without_partial_output(tmp_path, src):
    d, _ = src
    m = manifest_dict(60)
    m["cutout_path"][4] = "../../etc/passwd"
    write_manifest(m, d / "manifest.parquet")
    _expect_no_output(tmp_path, _spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")}),
                      "outside the data root")


def test_annulus_not_fitting_is_spec_error(tmp_path, src):
    d, _ = src
    _expect_no_output(tmp_path, _spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")},
                                      preprocess={"name": "raw_robust", "annulus": [32.5, 45]}), "does not fit")


def test_paired_controls_refused_unless_allowed(tmp_path, src):
    d, _ = src
    m = manifest_dict(60)
    m["ra"][5], m["dec"][5] = m["ra"][4], m["dec"][4]  # row 4 is a positive, row 5 a control of the same galaxy
    write_manifest(m, d / "manifest.parquet")
    data = {"name": "manifest", "path": str(d / "manifest.parquet")}
    _expect_no_output(tmp_path, _spec(tmp_path, data), "paired controls")
    res = run(_spec(tmp_path, {**data, "split": {"paired_controls": True}}))
    assert res.stages["data"] == "ran"


def test_manifest_scheme_with_leaky_splits_stops(tmp_path, src):
    d, _ = src
    m = manifest_dict(60)
    m["ra"][:] = 10.0  # all in one pixel ...
    m["dec"][:] = np.linspace(0, 0.01, 60)
    m["split"] = ["train", "test"] * 30  # ... but split per galaxy: leaks
    write_manifest(m, d / "manifest.parquet")
    _expect_no_output(tmp_path, _spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet"),
                                                 "split": {"scheme": "manifest"}}), "share HEALPix pixels")


def test_bad_split_config_is_spec_error(tmp_path, src):
    d, _ = src
    for split, words in (({"fractions": {"train": 0.5, "test": 0.4}}, "sum to"), ({"nside": 100}, "power of two")):
        with pytest.raises(SpecError, match=words):
            run(_spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet"), "split": split}))


class ReadsPreprocess(Stage):
    """A downstream stage that reads [preprocess], as training does (lists it in ``inputs``)."""

    name = "reads_preprocess"
    trigger = "data"
    needs = ("data/manifest.parquet",)
    produces = ("reads_preprocess/clip.json",)
    inputs = ("data", "preprocess")

    def run(self, ctx):
        io.write_json(ctx.path("reads_preprocess/clip.json"), ctx.spec.preprocess.clip)


class ReaderPlugin:
    @hookimpl
    def register_stages(self, register):
        register("reads_preprocess", ReadsPreprocess())


def test_changing_preprocess_reruns_readers_not_the_data_stage(tmp_path, src):
    d, _ = src
    spec = _spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")},
                 preprocess={"name": "raw_robust", "annulus": [10, 16], "clip": 10.0})
    def stages(res):
        return {k: res.stages[k] for k in ("data", "reads_preprocess")}

    with registered(ReaderPlugin(), "reader", "dhs-reader", "1.0"):
        assert stages(run(spec)) == {"data": "ran", "reads_preprocess": "ran"}
        assert stages(run(spec, ["preprocess.clip=5.0"])) == {"data": "skipped", "reads_preprocess": "ran"}
        assert json.loads((tmp_path / "run/reads_preprocess/clip.json").read_text()) == 5.0
        # the source's own options still rerun it
        moved = run(spec, ["preprocess.clip=5.0", "data.split.seed=7"])
        assert stages(moved) == {"data": "ran", "reads_preprocess": "ran"}


def _expect_plan_error(tmp_path, spec, *words):
    with pytest.raises(SpecError) as err:
        plan(spec)
    for w in ("preprocess.annulus", *words):
        assert w in str(err.value)
    assert not (tmp_path / "run").exists()
    return err.value


def test_annulus_wider_than_manifest_stamp_fails_plan_and_writes_nothing(tmp_path, src):
    d, _ = src  # store.json next to the manifest states 32-px stamps
    spec = _spec(tmp_path, {"name": "manifest", "path": str(d / "manifest.parquet")},
                 preprocess={"name": "raw_robust", "annulus": [12, 20]})
    _expect_plan_error(tmp_path, spec, "32x32", "[12, 20]")


def test_manifest_stamp_comes_from_the_first_cutout(tmp_path, src):
    d, _ = src
    (d / "store.json").unlink()  # no stated stamp: the first cutout's shape is the stamp
    data = {"name": "manifest", "path": str(d / "manifest.parquet"), "data_root": str(d / "cutouts")}
    spec = _spec(tmp_path, data, preprocess={"name": "raw_robust", "annulus": [12, 20]})
    _expect_plan_error(tmp_path, spec, "32x32")
    assert plan(_spec(tmp_path, data, preprocess={"name": "raw_robust", "annulus": [10, 16]}))
    # a missing first cutout is the data stage's business when it runs (excluded and counted),
    # not the pre-run check's: the check is skipped
    (d / "cutouts/c/g0000.npz").unlink()
    assert plan(spec) and not (tmp_path / "run").exists()


def test_legacysurvey_stamp_is_checked_without_reading_anything(tmp_path):
    # no catalog or cutout exists: the configured stamp alone decides
    data = {"name": "legacysurvey", "catalogs": [str(tmp_path / "none.fits")], "cutout_dir": str(tmp_path / "none"),
            "stamp": 64}
    spec = _spec(tmp_path, data, preprocess={"name": "raw_robust", "annulus": "stamp101"})
    _expect_plan_error(tmp_path, spec, "64x64", "legacysurvey")


def test_data_stage_artifacts_are_the_layout_names():
    from dhs_core import artifact, plugins
    from dhs_data import layout

    stage = plugins.components("stage")["data"].impl
    assert stage.artifacts == layout.ARTIFACTS
    assert artifact("data", "manifest") == f"{layout.DATA_DIR}/{layout.MANIFEST}" == "data/manifest.parquet"
    assert set(stage.produces) == {"data/manifest.parquet", "data/data_report.json"}


def test_preprocess_as_a_list_of_tables_is_a_chain_checked_against_the_stamp(tmp_path, src):
    """[[preprocess]] reads as one chain; the stamp check runs the steps in order, so a crop to
    16 px then a [10, 16] annulus fails before anything is written, while [6, 8] fits."""
    from dhs_core.spec import load_spec

    d, _ = src
    data = {"name": "manifest", "path": str(d / "manifest.parquet")}
    steps = [{"name": "center_crop", "size": 16}, {"name": "raw_robust", "annulus": [6, 8]}]
    (point,) = load_spec(_spec(tmp_path, data, preprocess=steps))
    assert point.spec.preprocess.name == "chain"
    assert [s["name"] for s in point.spec.preprocess.steps] == ["center_crop", "raw_robust"]
    plan(_spec(tmp_path, data, preprocess=steps))
    too_wide = [{"name": "center_crop", "size": 16}, {"name": "raw_robust", "annulus": [10, 16]}]
    with pytest.raises(SpecError, match="does not fit"):
        plan(_spec(tmp_path, data, preprocess=too_wide))
    assert not (tmp_path / "run").exists()
    # a single table still works as before
    (point,) = load_spec(_spec(tmp_path, data, preprocess={"name": "raw_robust", "annulus": [10, 16]}))
    assert point.spec.preprocess.name == "raw_robust"
