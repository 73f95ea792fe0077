"""The selection_function stage end to end: synthetic survey -> 1-epoch tiny model -> injection-recovery,
per-cell resume, counts, failed injections never scored, and scoring identical to the train stage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import stats

import dhs_core
from dhs_core import hookimpl
from dhs_core.errors import UserError
from dhs_core.testing import registered
from dhs_inject.injectors.base import BaseInjector
from dhs_inject.injectors.model1 import Model1Config
from dhs_inject.selection import cell as cell_module

#: dhs-eval's report stage reads these columns of cells.parquet
REPORT_COLUMNS = {"theta_e", "psfsize_r", "psfdepth_r", "source_mag", "n_detected", "n_ok"}
PSF_EDGES = [0.5, 1.3, 3.0]


def spec(out, **selection):
    # fast_kernel off: the compiled kernel is exercised once, in test_injectors.py (compile time)
    section = {"injector": {"name": "model1", "fast_kernel": False}, "theta_e": {"start": 1.0, "stop": 1.5, "step": 0.5},
               "psfsize_r_edges": PSF_EDGES, "source_mag_edges": [21.0, 23.0], "per_cell": 8, "batch_size": 8,
               **selection}
    return {"run": {"name": "sf", "seed": 4, "out_dir": str(out)},
            "data": {"name": "synthetic", "n_hosts": 160, "positive_fraction": 0.25},
            "preprocess": {"name": "raw_robust"},
            "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
            "train": {"epochs": 1, "micro_batch": 16, "effective_batch": 16},
            "selection_function": section}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sf") / "run"
    result = dhs_core.run(spec(out))
    return out, result


def _copy(finished, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished[0], dst)
    return dst


def test_end_to_end_cells_meta_and_figures(finished):
    run_dir, result = finished
    assert result.stages["selection_function"] == "ran"
    sf = run_dir / "selection_function"
    cells = pq.read_table(sf / "cells.parquet").to_pydict()
    assert REPORT_COLUMNS <= set(cells)
    assert len(cells["theta_e"]) == 4  # 2 theta_E x 2 PSF bins x 1 depth bin x 1 magnitude bin
    assert sorted(set(cells["theta_e"])) == [1.0, 1.5]
    assert sorted(set(cells["psfsize_r"])) == pytest.approx([0.9, 2.15])  # bin centres
    assert set(cells["source_mag"]) == {22.0}
    meta = json.loads((sf / "meta.json").read_text())
    thr = meta["threshold"]
    # threshold recomputed from the train stage's scores: the validly scored val negatives
    manifest = pq.read_table(run_dir / "data" / "manifest.parquet")
    label = dict(zip(manifest.column("galaxy_id").to_pylist(), manifest.column("label").to_pylist()))
    scores = pq.read_table(run_dir / "train" / "scores.parquet").to_pydict()
    neg = np.array([s for g, sp, s in zip(scores["galaxy_id"], scores["split"], scores["score"])
                    if sp == "val" and label[g] == 0])
    assert meta["n_valid_negatives"] == len(neg) > 0
    assert (neg >= thr).sum() / len(neg) == meta["achieved_fpr"] <= meta["target_fpr"]
    if len(neg) < 1000:  # FPR 1e-3 not resolvable: just above the highest negative
        assert thr == np.nextafter(neg.max(), np.inf)
    inj = pq.read_table(sf / "injections.parquet")
    for i, cid in enumerate(cells["cell_id"]):
        rows = inj.filter(pc.equal(inj.column("cell_id"), cid)).to_pydict()
        assert len(rows["score"]) == cells["n_ok"][i]
        assert cells["n_ok"][i] + cells["n_failed"][i] == cells["n_attempted"][i]
        assert cells["n_detected"][i] == sum(s >= thr for s in rows["score"])
        # hosts come from the cell's own PSF bin; arcs have the cell's theta_E and magnitude range
        assert all(cells["psfsize_r_lo"][i] <= p <= cells["psfsize_r_hi"][i] for p in rows["psfsize_r"])
        assert set(rows["theta_e"]) <= {cells["theta_e"][i]}
        assert all(21.0 <= m <= 23.0 for m in rows["src_r_mag"])
        k, n = cells["n_detected"][i], cells["n_ok"][i]
        if n:
            assert cells["completeness"][i] == k / n  # k/n, as published
            assert cells["completeness_median"][i] == pytest.approx(stats.beta.ppf(0.5, k + 0.5, n - k + 0.5))
            lo, hi = stats.beta.interval(0.95, k + 0.5, n - k + 0.5)
            assert (cells["completeness_low_95"][i], cells["completeness_high_95"][i]) == pytest.approx((lo, hi))
    assert sum(cells["n_ok"]) == meta["n_ok"] > 0
    # one threshold: one row per cell, all of it the primary; hosts drawn without replacement
    assert set(cells["threshold_name"]) == {"fpr=0.001"} and all(cells["primary"])
    for i, cid in enumerate(cells["cell_id"]):
        ids = inj.filter(pc.equal(inj.column("cell_id"), cid)).column("galaxy_id").to_pylist()
        assert cells["n_unique_hosts"][i] == len(set(ids))
        if cells["n_hosts"][i] >= 8:  # the pool allows it: no host twice in the cell
            assert len(set(ids)) == len(ids) and not cells["host_reuse"][i]
    hosts = set(inj.column("galaxy_id").to_pylist())
    test_negatives = {g for g, sp, lab in zip(manifest.column("galaxy_id").to_pylist(),
                                               manifest.column("split").to_pylist(),
                                               manifest.column("label").to_pylist()) if sp == "test" and lab == 0}
    assert hosts <= test_negatives
    for png in ("completeness_theta_e.png", "completeness_theta_e_psfsize_r.png"):
        assert (sf / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.metrics["selection_function.completeness"] == pytest.approx(meta["completeness"])
    assert "Not run (no selection_function" not in (run_dir / "MODEL_CARD.md").read_text()
    # the report's gallery: injected examples per theta_E and the top-scoring test non-lenses
    gallery = np.load(run_dir / "selection_function" / "gallery.npz")
    assert set(gallery["inj_theta_e"]) <= {1.0, 1.5} and len(gallery["inj_images"]) > 0
    detected = gallery["inj_scores"] >= float(gallery["threshold"])
    assert (detected == gallery["inj_detected"]).all() and gallery["inj_images"].shape[1:] == (3, 64, 64)
    # the false positives are the highest-scoring test negatives of the train stage's scores
    test_neg = sorted((s for g, sp, s in zip(scores["galaxy_id"], scores["split"], scores["score"])
                       if sp == "test" and label[g] == 0), reverse=True)
    assert len(gallery["fp_ids"]) > 0
    assert list(gallery["fp_scores"]) == pytest.approx(test_neg[:len(gallery["fp_scores"])])


def test_cells_diagnostics_and_train_stage_score_through_one_inference_path(finished):
    """best.pt as the cells load it (network through the registry, the checkpoint's own
    preprocessor) reproduces train/scores.parquet, and the diagnostics load the same finder."""
    from dhs_data.stores import open_store
    from dhs_inject.diagnostics import groups
    from dhs_models.inference import load_finder

    run_dir, _ = finished
    best = run_dir / "train" / "best.pt"
    finder = load_finder(best, preprocess={"name": "raw_robust", "annulus": [20, 32], "clip": 10.0})
    assert groups.load_run_model(run_dir, "feature_space") is finder
    assert cell_module.load_finder is load_finder
    manifest = pq.read_table(run_dir / "data" / "manifest.parquet").to_pydict()
    path_of = dict(zip(manifest["galaxy_id"], manifest["cutout_path"]))
    scores = pq.read_table(run_dir / "train" / "scores.parquet").to_pydict()
    images = open_store(run_dir / "data").get_many([path_of[g] for g in scores["galaxy_id"]])
    mine = cell_module.score_images(finder.model, images, preprocess=finder.preprocess, batch_size=16)
    np.testing.assert_allclose(mine, scores["score"], rtol=1e-5, atol=1e-6)


def test_rerun_skips_and_a_lost_cell_is_the_only_one_recomputed(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    assert dhs_core.run(spec(run_dir)).stages["selection_function"] == "skipped"
    sf = run_dir / "selection_function"
    before = pq.read_table(sf / "cells.parquet")
    files = sorted((sf / "cells").glob("*.parquet"))
    assert len(files) == 4
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}
    # a run killed after three cells: one cell file and the aggregate are missing
    files[1].unlink()
    (sf / "cells.parquet").unlink()
    result = dhs_core.run(spec(run_dir))
    assert result.stages["selection_function"] == "ran"
    meta = json.loads((sf / "meta.json").read_text())
    assert (meta["cells_computed"], meta["cells_reused"]) == (1, 3)
    assert files[1].exists()
    assert all(f.stat().st_mtime_ns == mtimes[f.name] for f in files if f != files[1])
    assert pq.read_table(sf / "cells.parquet").equals(before)  # cell seeds make the rerun identical


def test_changed_grid_never_reuses_stale_cells(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    result = dhs_core.run(spec(run_dir, per_cell=5, theta_e={"start": 1.0, "stop": 1.0, "step": 0.5}))
    assert result.stages["selection_function"] == "ran"
    meta = json.loads((run_dir / "selection_function" / "meta.json").read_text())
    assert meta["cells_reused"] == 0 and meta["n_cells"] == 2
    assert len(list((run_dir / "selection_function" / "cells").glob("*.parquet"))) == 2
    cells = pq.read_table(run_dir / "selection_function" / "cells.parquet").to_pydict()
    assert all(r == 5 for r in cells["n_requested"])


class PickyInjector(BaseInjector):
    """Refuses every host whose galaxy id ends in an even digit, and records every attempt."""

    attempts: list[str] = []

    def host_problem(self, host, meta):
        gid = str(meta["galaxy_id"])
        PickyInjector.attempts.append(gid)
        return "even_host" if int(gid[-1]) % 2 == 0 else super().host_problem(host, meta)


class PickyPlugin:
    @hookimpl
    def register_injectors(self, register):
        register("picky", lambda cfg: PickyInjector(cfg), config=Model1Config)


def test_failed_injections_are_counted_and_never_scored(finished, tmp_path, monkeypatch):
    run_dir = _copy(finished, tmp_path)
    scored = []
    real = cell_module.score_images

    def spy(model, images, **kwargs):
        out = real(model, images, **kwargs)
        scored.append(len(images))
        out[:1] = np.nan  # the model fails on one cutout per batch: a failure, never a non-detection
        return out

    monkeypatch.setattr(cell_module, "score_images", spy)
    PickyInjector.attempts.clear()
    with registered(PickyPlugin(), "picky-test", "dhs-inject-tests", "1.0"):
        # plots off: the report's gallery draws its own few examples with the injector, which
        # are not grid attempts and would be counted by the injector's attempt log
        result = dhs_core.run(spec(run_dir, injector={"name": "picky", "max_retries": 2, "fast_kernel": False},
                                   plots=False, qa="off"))  # the QA's injections would be attempts too
    assert result.stages["selection_function"] == "ran"
    sf = run_dir / "selection_function"
    cells = pq.read_table(sf / "cells.parquet").to_pydict()
    meta = json.loads((sf / "meta.json").read_text())
    failures = meta["failures_by_reason"]
    n_ok, n_failed = sum(cells["n_ok"]), sum(cells["n_failed"])
    assert failures["even_host"] > 0 and failures["nonfinite_score"] == len(scored)
    assert n_failed == sum(failures.values())
    # every attempt is either an ok injection or a counted failure
    assert n_ok + n_failed == len(PickyInjector.attempts) == sum(cells["n_attempted"])
    # only injections into accepted hosts were scored, and NaN scores are not in the results
    assert sum(scored) == n_ok + failures["nonfinite_score"]
    inj = pq.read_table(sf / "injections.parquet").to_pydict()
    assert len(inj["score"]) == n_ok and np.isfinite(inj["score"]).all()
    assert all(int(g[-1]) % 2 == 1 for g in inj["galaxy_id"])


def test_missing_host_split_is_a_user_error(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    with pytest.raises(UserError, match="host_split"):
        dhs_core.run(spec(run_dir, host_split="holdout"))


def test_unphysical_prior_is_a_spec_error_before_anything_runs(tmp_path):
    from dhs_core.errors import SpecError

    bad = {"name": "model1", "fast_kernel": False, "prior": {"src_r_e": [-0.1, 0.3]}}
    with pytest.raises(SpecError, match=r"selection_function\.injector\.prior.*half-light radius must be > 0"):
        dhs_core.run(spec(tmp_path / "run", injector=bad))
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_trained_with_another_preprocessor_is_refused(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    other = spec(run_dir)
    other["preprocess"] = {"name": "raw_robust", "annulus": [24, 32]}
    # only the selection function reruns: train/best.pt stays the one trained with annulus [20, 32]
    with pytest.raises(UserError, match="preprocessed as in training"):
        dhs_core.run(other, stages=["selection_function"])


def test_many_thresholds_from_one_scoring_pass_and_depth_in_magnitudes(finished, tmp_path):
    """Fixed and FPR thresholds side by side from the same stored scores (no cell recomputed),
    depth bins in 5-sigma mag, an FPR the negatives cannot resolve reported without rows."""
    run_dir = _copy(finished, tmp_path)
    manifest = pq.read_table(run_dir / "data" / "manifest.parquet")
    from dhs_inject.depth import psfdepth_to_m5

    m5 = psfdepth_to_m5(manifest.column("psfdepth_r").to_numpy())
    edges = [float(np.floor(np.nanmin(m5) * 10) / 10), float(np.ceil(np.nanmax(m5) * 10) / 10 + 0.1)]
    thresholds = {"fixed": [0.3, 0.5, 0.7], "fpr": [1e-1, 1e-6]}
    result = dhs_core.run(spec(run_dir, thresholds=thresholds, depth_mag_edges=edges))
    assert result.stages["selection_function"] == "ran"
    sf = run_dir / "selection_function"
    cells = pq.read_table(sf / "cells.parquet").to_pydict()
    meta = json.loads((sf / "meta.json").read_text())
    names = ["p>=0.3", "p>=0.5", "p>=0.7", "fpr=0.1"]  # fpr=1e-06 is below 1/n_valid: no rows
    assert sorted(set(cells["threshold_name"])) == sorted(names)
    assert len(cells["cell_id"]) == 4 * len(names)
    unresolved = [t for t in meta["thresholds"] if t["name"] == "fpr=1e-06"][0]
    assert not unresolved["rows"] and not unresolved["resolvable"] and "not resolvable" in unresolved["status"]
    assert meta["primary_threshold"] == "p>=0.3" and meta["threshold"] == 0.3
    inj = pq.read_table(sf / "injections.parquet")
    by_cell = {}
    for cid, score in zip(inj.column("cell_id").to_pylist(), inj.column("score").to_pylist()):
        by_cell.setdefault(cid, []).append(score)
    values = {t["name"]: t["threshold"] for t in meta["thresholds"]}
    for i, cid in enumerate(cells["cell_id"]):
        thr = values[cells["threshold_name"][i]]
        assert cells["threshold"][i] == thr
        assert cells["n_detected"][i] == sum(s >= thr for s in by_cell.get(cid, []))
        assert cells["depth_m5_lo"][i] == edges[0] and cells["depth_m5_hi"][i] == edges[1]
    # completeness can only fall as the fixed threshold rises, cell by cell
    k = {(c, t): n for c, t, n in zip(cells["cell_id"], cells["threshold_name"], cells["n_detected"])}
    for cid in set(cells["cell_id"]):
        assert k[cid, "p>=0.3"] >= k[cid, "p>=0.5"] >= k[cid, "p>=0.7"]
    # summaries per threshold, both labelled: pooled k/n and the mean over cells
    total = meta["summaries"]["p>=0.5"]["summary"]
    rows = [i for i, t in enumerate(cells["threshold_name"]) if t == "p>=0.5"]
    assert total["n_detected"] == sum(cells["n_detected"][i] for i in rows)
    per_cell = [cells["n_detected"][i] / cells["n_ok"][i] for i in rows if cells["n_ok"][i]]
    assert total["mean_over_cells"] == pytest.approx(np.mean(per_cell))
    # each threshold's summaries are headline metrics too (what [[gates]] and sweep tables name)
    assert result.metrics["selection_function.mean_over_cells@p>=0.5"] == pytest.approx(np.mean(per_cell))
    assert result.metrics["selection_function.completeness@p>=0.5"] == pytest.approx(
        total["n_detected"] / total["n_ok"])
    assert set(meta["summaries"]["p>=0.5"]["marginals"]) >= {"theta_e", "psfsize_r", "depth_m5", "source_mag"}
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "Threshold p>=0.7" in card and "Threshold fpr=1e-06" in card and "Mean over cells" in card


def test_sensitivity_variants_use_common_random_numbers(finished, tmp_path, monkeypatch):
    """In one run: an identity re-render gives Delta C exactly 0 in every cell and threshold; with a
    scorer whose score rises with the arc's flux, a variant that only brightens the sources never
    lowers any cell's k; a PSF variant changes the arcs. No retraining (best.pt untouched)."""
    run_dir = _copy(finished, tmp_path)
    ckpt = (run_dir / "train" / "best.pt").read_bytes()

    def flux_scorer(model, images, **kwargs):
        # the mean r-band light in the central 16 x 16 pixels (where the arc is), squashed to (0, 1)
        c = images.shape[-1] // 2
        centre = np.asarray(images)[:, 1, c - 8:c + 8, c - 8:c + 8].astype(np.float64).mean(axis=(1, 2))
        return 1.0 / (1.0 + np.exp(-centre / 0.05))

    monkeypatch.setattr(cell_module, "score_images", flux_scorer)
    shutil.rmtree(run_dir / "selection_function")  # its cells were scored by the trained model
    variants = [{"name": "identity_check"}, {"name": "brighter", "src_r_mag_shift": -1.0},
                {"name": "psf+10%", "psf_fwhm_scale": 1.1}]
    result = dhs_core.run(spec(run_dir, sensitivity=variants, thresholds={"fixed": [0.6, 0.7, 0.8]}, plots=False))
    assert result.stages["selection_function"] == "ran"
    sf = run_dir / "selection_function"
    sens = pq.read_table(sf / "sensitivity.parquet").to_pydict()
    cells = pq.read_table(sf / "cells.parquet").to_pydict()
    rows = {v: [i for i, name in enumerate(sens["variant"]) if name == v] for v in ("identity_check", "brighter")}
    assert len(rows["identity_check"]) == len(cells["cell_id"]) == 4 * 3
    for i in rows["identity_check"]:
        assert sens["n_detected"][i] == sens["n_detected_base"][i] and sens["n_ok"][i] == sens["n_ok_base"][i]
        assert sens["delta_completeness"][i] == 0.0 or (np.isnan(sens["delta_completeness"][i])
                                                        and sens["n_ok_base"][i] == 0)
    assert all(sens["n_detected"][i] >= sens["n_detected_base"][i] for i in rows["brighter"])
    assert any(sens["n_detected"][i] > sens["n_detected_base"][i] for i in rows["brighter"])
    meta = json.loads((sf / "meta.json").read_text())
    ident = meta["sensitivity"]["identity_check"]["by_threshold"]["p>=0.6"]
    assert ident["mean_delta"] == 0.0 and ident["max_abs_delta"] == 0.0
    bright = meta["sensitivity"]["brighter"]["by_threshold"]["p>=0.7"]
    deltas = [sens["delta_completeness"][i] for i in rows["brighter"] if sens["threshold_name"][i] == "p>=0.7"]
    assert bright["mean_delta"] == pytest.approx(np.nanmean(deltas))
    assert bright["std_delta"] == pytest.approx(np.nanstd(deltas, ddof=1))
    assert (run_dir / "train" / "best.pt").read_bytes() == ckpt
    assert "| brighter |" in (run_dir / "MODEL_CARD.md").read_text()


def test_a_sensitivity_variant_naming_an_unknown_parameter_is_a_spec_error(tmp_path):
    from dhs_core.errors import SpecError

    with pytest.raises(SpecError, match="psf_scale"):
        dhs_core.run(spec(tmp_path / "run", sensitivity=[{"name": "x", "psf_scale": 1.1}]))
    with pytest.raises(SpecError, match="model2 takes the lens q"):
        dhs_core.run(spec(tmp_path / "run", injector={"name": "model2", "fast_kernel": False},
                          sensitivity=[{"name": "q", "lens_q": [0.7, 1.0]}]))
    assert not (tmp_path / "run").exists()


def test_prior_sets_give_their_own_cells_and_summaries(finished, tmp_path):
    """Dual-prior report in one run: each set's cells (theta_E and magnitude bins inside its ranges)
    injected with its beta_frac range; a set no cell fits is reported, not faked."""
    from dhs_inject.selection.cell import read_cell

    run_dir = _copy(finished, tmp_path)
    near = {"name": "near", "theta_e": [1.0, 1.2], "beta_frac": [0.1, 0.3], "src_r_mag": [22.0, 24.0]}
    result = dhs_core.run(spec(run_dir, priors=["broad", near], plots=False))
    assert result.stages["selection_function"] == "ran"
    sf = run_dir / "selection_function"
    table = pq.read_table(sf / "prior_sets.parquet").to_pydict()
    assert set(table["prior_set"]) == {"near"}  # broad's magnitudes (23-26) miss the grid's 21-23 bin
    assert set(zip(table["source_mag_lo"], table["source_mag_hi"])) == {(22.0, 23.0)}  # bin and set overlap
    assert set(table["theta_e"]) == {1.0} and len(table["cell_id"]) == 2  # theta_E 1.5 is outside near
    assert set(zip(table["beta_frac_lo"], table["beta_frac_hi"])) == {(0.1, 0.3)}
    files = sorted((sf / "cells").glob("prior-near__*.parquet"))
    assert len(files) == 2
    for path in files:
        _, rows = read_cell(path)
        beta = rows.column("beta_frac").to_numpy()
        assert beta.size and (beta >= 0.1 - 1e-9).all() and (beta <= 0.3 + 1e-9).all()
        mag = rows.column("src_r_mag").to_numpy()
        assert (mag >= 22.0 - 1e-9).all() and (mag <= 23.0 + 1e-9).all()
    meta = json.loads((sf / "meta.json").read_text())
    assert "no grid cell" in meta["prior_sets"]["broad"]["status"]
    summary = meta["prior_sets"]["near"]["by_threshold"]["fpr=0.001"]
    assert summary["n_ok"] == sum(table["n_ok"]) and summary["n_detected"] == sum(table["n_detected"])
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "Prior sets" in card and "near: θE 1–1.2" in card


class LeakyInjector(BaseInjector):
    """Adds each arc twice to its host: the flux-conservation QA check must catch it."""

    def inject(self, hosts, host_meta, rng):
        batch = super().inject(hosts, host_meta, rng)
        batch.images = (batch.images + batch.arcs).astype(np.float32)
        return batch


class LeakyPlugin:
    @hookimpl
    def register_injectors(self, register):
        register("leaky", lambda cfg: LeakyInjector(cfg), config=Model1Config)


def test_injection_qa_runs_before_the_grid_and_stops_it_on_a_failed_check(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    sf = run_dir / "selection_function"
    qa = json.loads((sf / "qa.json").read_text())  # the finished run's QA (default: qa = "stop")
    names = [c["name"] for c in qa["checks"]]
    assert names[:2] == ["success_rate", "flux_conservation"] and qa["passed"]
    manifest = pq.read_table(run_dir / "data" / "manifest.parquet").to_pydict()
    pool = sum(1 for sp, lab in zip(manifest["split"], manifest["label"]) if sp == "test" and lab == 0)
    assert qa["n"] == min(100, pool) and qa["success_rate"] == 1.0  # distinct hosts, one injection each
    assert max(qa["flux_conservation_error"].values()) < 1e-5  # the arc scored is the arc rendered
    assert set(qa["thresholds"]["fpr=0.001"]) >= {"host_fpr", "detection_rate", "detection_rate_core_suppressed"}
    assert "Injection QA | passed" in (run_dir / "MODEL_CARD.md").read_text()
    shutil.rmtree(sf)
    with registered(LeakyPlugin(), "leaky-test", "dhs-inject-tests", "1.0"):
        with pytest.raises(UserError, match="flux_conservation"):
            dhs_core.run(spec(run_dir, injector={"name": "leaky", "fast_kernel": False}, plots=False))
        assert not json.loads((sf / "qa.json").read_text())["passed"]
        assert not (sf / "cells.parquet").exists()  # stopped before the grid
        result = dhs_core.run(spec(run_dir, injector={"name": "leaky", "fast_kernel": False}, plots=False, qa="warn"))
    assert result.stages["selection_function"] == "ran"
    meta = json.loads((sf / "meta.json").read_text())
    assert meta["qa"] == {"passed": False, "mode": "warn", "failed": ["flux_conservation"]}


def test_core_suppression_replaces_the_centre_by_the_ring_median():
    from dhs_inject.selection.qa import suppress_core

    rng = np.random.default_rng(0)
    hosts = rng.normal(0.0, 0.01, (2, 3, 21, 21)).astype(np.float32)
    hosts[:, :, 8:13, 8:13] += 5.0  # a bright core
    out = suppress_core(hosts, radius=4.0)
    y, x = np.mgrid[:21, :21]
    r = np.hypot(x - 10, y - 10)
    ring = (r >= 4) & (r < 8)
    for i in range(2):
        for b in range(3):
            assert np.all(out[i, b][r < 4] == np.median(hosts[i, b][ring]))
    np.testing.assert_array_equal(out[..., r >= 4], hosts[..., r >= 4])


def test_published_grid_example_runs_end_to_end_at_tiny_size(tmp_path):
    """examples/selection/published-grid.toml with only its sizes reduced (--set): five thresholds,
    the published sensitivity variants, both prior sets and the QA in one run."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "selection" / "published-grid.toml"
    overrides = [
        f"run.out_dir={tmp_path / 'run'}", "data.n_hosts=160", "data.positive_fraction=0.25",
        "model.base_ch=4", "model.blocks=[1, 1, 1, 1]", "train.epochs=1", "train.micro_batch=16",
        "train.effective_batch=16", "train.schedule={ name = \"cosine\", t_max = 1 }",
        "selection_function.injector={ name = \"model1\", fast_kernel = false }",
        "selection_function.theta_e={ start = 1.0, stop = 1.0, step = 1.0 }",
        "selection_function.psfsize_r_edges=[0.825, 1.275, 1.875]", "selection_function.per_cell=2",
        "selection_function.depth_mag_edges=[23.25, 24.25, 25.25]", "selection_function.qa_n=10",
        "selection_function.qa=\"warn\"",  # a one-epoch model: the host-FPR check may fail by chance
    ]
    result = dhs_core.run(str(example), overrides)
    assert result.stages["selection_function"] == "ran"
    sf = tmp_path / "run" / "selection_function"
    cells = pq.read_table(sf / "cells.parquet").to_pydict()
    meta = json.loads((sf / "meta.json").read_text())
    assert [t["name"] for t in meta["thresholds"]] == ["p>=0.3", "p>=0.5", "p>=0.7", "fpr=0.001", "fpr=0.0001"]
    assert len(set(cells["cell_id"])) == 1 * 2 * 2  # theta_E x PSF x depth, one magnitude bin
    sens = pq.read_table(sf / "sensitivity.parquet").to_pydict()
    assert len(set(sens["variant"])) == 9 and len(meta["sensitivity"]) == 9
    assert {"broad", "anchored"} == set(meta["prior_sets"])
    anchored = pq.read_table(sf / "prior_sets.parquet").to_pydict()
    rows = [i for i, p in enumerate(anchored["prior_set"]) if p == "anchored"]
    assert rows and all(anchored["source_mag_hi"][i] == 25.0 for i in rows)  # r [23, 25] inside the [23, 26] bin
    assert (sf / "qa.json").is_file() and "passed" in meta["qa"]


def test_a_preprocess_chain_reaches_training_and_injections_alike(tmp_path):
    """[[preprocess]] (crop 101 -> 64, then raw_robust): the checkpoint records the resolved
    steps, the selection function accepts the same chain (and scores its injections through it),
    and scoring a stored cutout through the finder equals composing the steps by hand."""
    import torch

    from dhs_data.preprocess import center_crop, raw_robust
    from dhs_data.stores import open_store
    from dhs_models.inference import load_finder

    s = spec(tmp_path / "run", theta_e={"start": 1.0, "stop": 1.0, "step": 0.5}, per_cell=2)
    s["data"] = {**s["data"], "stamp": 101, "n_hosts": 100}
    s["preprocess"] = [{"name": "center_crop", "size": 64}, {"name": "raw_robust", "annulus": [20, 32]}]
    result = dhs_core.run(s)
    assert result.stages["selection_function"] == "ran"
    run_dir = tmp_path / "run"
    ckpt = torch.load(run_dir / "train" / "best.pt", weights_only=True)
    assert ckpt["preprocess"]["name"] == "chain"
    assert [st["name"] for st in ckpt["preprocess"]["steps"]] == ["center_crop", "raw_robust"]
    finder = load_finder(run_dir / "train" / "best.pt", preprocess={"name": "chain", "steps": s["preprocess"]})
    key = pq.read_table(run_dir / "data" / "manifest.parquet").column("cutout_path")[0].as_py()
    raw = open_store(run_dir / "data").get_many([key])
    assert np.array_equal(finder.inputs(raw), raw_robust(center_crop(raw, 64), annulus=(20, 32)))
    with pytest.raises(UserError, match="preprocessed as in training"):
        load_finder(run_dir / "train" / "best.pt", preprocess={"name": "raw_robust", "annulus": [20, 32]})


def test_scoring_device_cuda_without_cuda_is_refused(finished, tmp_path, monkeypatch):
    """device = "cuda" on a machine without CUDA stops the stage with the reason; "cpu" and the
    default "auto" score on the CPU (the train stage's own path)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = _copy(finished, tmp_path)
    with pytest.raises(UserError, match="CUDA"):
        dhs_core.run(spec(run_dir, device="cuda"))
    # rendering the injections on CUDA (the injector's device) is refused the same way, up front
    with pytest.raises(UserError, match="CUDA"):
        dhs_core.run(spec(run_dir, device="cpu", injector={"name": "model1", "fast_kernel": False, "device": "cuda"}))
    result = dhs_core.run(spec(run_dir, device="cpu"))
    assert result.stages["selection_function"] == "ran"
