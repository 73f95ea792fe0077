"""Injection-based diagnostics evaluators: embedding extraction, group drawing, the 2-D map, the
realism rule, and the feature_space and arc_morphology evaluators end to end through the runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import ValidationError

from dhs_core import plugins, run
from dhs_core.errors import UserError
from dhs_eval.evaluators.base import EvaluationContext
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics.embeddings import (
    PENULTIMATE,
    extract_embeddings,
    project_2d,
    stage_end_layers,
    umap_available,
)
from dhs_inject.diagnostics.feature_space import realism_rule
from dhs_models import build_model

EVALUATORS = sorted(n for n, c in plugins.components("evaluator").items() if c.distribution == "dhs-inject")
N_PER_GROUP = 12
# fast_kernel off: compiling the fused kernel costs more than these few injections
INJECTOR = {"name": "model1", "supersample": 1, "fast_kernel": False}
SPLITS = ("test", "val")


def test_dhs_inject_registers_both_diagnostics():
    # the two original diagnostics, plus the published tests registered beside them
    assert {"arc_morphology", "feature_space", "beta_frac_ceiling", "host_conditioning"} <= set(EVALUATORS)


@pytest.mark.parametrize("name", EVALUATORS)
def test_config_contract_and_run_dir_required(name, tmp_path):
    comp = plugins.get("evaluator", name)
    with pytest.raises(ValidationError):
        comp.Config(no_such_option=1)
    cfg = comp.Config()
    with pytest.raises(ValidationError):
        cfg.n_per_group = 3
    with pytest.raises(UserError, match="run directory"):
        comp.impl(cfg).evaluate(None, tmp_path, EvaluationContext())
    with pytest.raises(UserError, match="best.pt"):
        comp.impl(cfg).evaluate(None, tmp_path, EvaluationContext(run_dir=tmp_path))


def test_embeddings_are_the_stage_outputs_and_the_head_input():
    torch.manual_seed(0)
    model = build_model("bottlenecked_resnet", base_ch=4, blocks=(2, 1, 1, 1)).eval()
    x = torch.randn(5, 3, 32, 32)
    # stage ends: the last unit of each resolution (units 0-1 at 32 px, then one unit per stage)
    layers = stage_end_layers(model, x)
    assert layers == ["backbone.units.1", "backbone.units.2", "backbone.units.3", "backbone.units.4"]
    emb, logits = extract_embeddings(model, x.numpy(), batch_size=2)
    bb = model.backbone
    with torch.no_grad():
        h = bb.stem(x)
        expected = {}
        for i, unit in enumerate(bb.units):
            h = unit(h)
            expected[f"backbone.units.{i}"] = h.mean(dim=(2, 3))
        features = bb(x)
        ref_logits = model(x).reshape(-1)
    for name in layers:
        assert np.allclose(emb[name], expected[name].double().numpy(), atol=1e-5)
    # the penultimate layer is what the final linear layer sees: the pooled backbone features
    assert emb[PENULTIMATE].shape == (5, 4 * 8)
    assert np.allclose(emb[PENULTIMATE], features.double().numpy(), atol=1e-5)
    assert np.allclose(logits, ref_logits.double().numpy(), atol=1e-5)
    assert model.training is False and not model.backbone.units[0]._forward_hooks  # hooks removed
    with pytest.raises(ValueError, match="not modules"):
        extract_embeddings(model, x.numpy(), layers=["backbone.nope"])


def test_embeddings_of_a_torchvision_resnet_are_its_four_layers():
    model = build_model("resnet18", small_input=True)
    assert stage_end_layers(model, torch.randn(1, 3, 32, 32)) == [
        "backbone.layer1.1", "backbone.layer2.1", "backbone.layer3.1", "backbone.layer4.1"]


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "run"
    injector = INJECTOR
    spec = {
        "run": {"name": "diag", "seed": 5, "out_dir": str(out)},
        # the synthetic survey renders 64 or 101 px stamps only; half the lenses Tier A so that the
        # held-out splits hold some
        "data": {"name": "synthetic", "n_hosts": 200, "stamp": 64, "positive_fraction": 0.3,
                 "tier_a_fraction": 0.5},
        "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
        "train": {"epochs": 1, "micro_batch": 32, "effective_batch": 32, "cpu_threads": 1},
        "evaluate": [
            {"name": "classification", "n_bootstrap": 0, "plots": False},
            {"name": "feature_space", "n_per_group": N_PER_GROUP, "injector": injector},
            {"name": "arc_morphology", "n_per_group": N_PER_GROUP, "injector": injector},
        ],
    }
    res = run(spec)
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    return res, out, metrics["evaluators"]


def test_feature_space_end_to_end(diagnosed):
    res, out, evaluators = diagnosed
    fs = evaluators["feature_space"]
    assert fs["component"]["distribution"] == "dhs-inject"
    counts = fs["counts"]
    assert counts["positives"] == min(N_PER_GROUP, counts["available_positives"]) > 0
    assert counts["negatives"] == N_PER_GROUP and 0 < counts["injections"] <= counts["hosts"]
    assert fs["layers"][-1] == PENULTIMATE and len(fs["layers"]) == 5  # four stage ends + penultimate
    sizes = {"injections_vs_positives": ("injections", "positives"), "positives_vs_negatives": ("positives", "negatives"),
             "injections_vs_negatives": ("injections", "negatives")}
    for layer in fs["layers"]:
        entry = fs["per_layer"][layer]
        for pair, groups in sizes.items():
            auc = entry["probe_auc"][pair]["auc"]
            assert auc is not None and 0.0 <= auc <= 1.0
            frechet = entry["frechet"][pair]
            if min(counts[g] for g in groups) <= entry["dim"]:
                assert frechet["distance"] is None and frechet["status"].startswith("not computable")
            else:
                assert frechet["status"] == "ok" and frechet["distance"] >= 0.0
    # stage widths 4, 8, 16, 32: with 12 per group the first two are computable, the rest are not
    assert fs["per_layer"]["backbone.units.0"]["frechet"]["positives_vs_negatives"]["status"] == "ok"
    assert fs["per_layer"][PENULTIMATE]["frechet"]["injections_vs_positives"]["status"].startswith("not computable")
    rec = fs["recall_at_threshold"]
    assert rec["threshold"] == 0.5
    for group in ("injections", "positives"):
        k, n = rec[group]["k"], rec[group]["n"]
        assert rec[group]["recall"] == pytest.approx(k / n)
        low, high = rec[group]["interval_95"]
        assert 0.0 <= low <= k / n <= high <= 1.0
    assert (out / "evaluate" / "feature_space_probe_auc.png").stat().st_size > 1000
    head = res.metrics["evaluate.feature_space.probe_auc_injections_vs_real"]
    assert head == pytest.approx(fs["per_layer"][PENULTIMATE]["probe_auc"]["injections_vs_positives"]["auc"])
    # the published groups: Tier-A lenses and injections split at beta_frac 0.55, each n reported
    assert set(fs["groups"]) == set(grp.GROUPS)
    for group in grp.GROUPS:
        assert fs["groups"][group]["n"] == counts[group]
    assert 0 < counts["tier_a"] <= N_PER_GROUP and counts["tier_a_status"] == "ok"
    assert 0 < counts["injections_low_bf"] <= counts["hosts"] and 0 < counts["injections_high_bf"] <= counts["hosts"]
    assert counts["beta_frac"] == {"split": 0.55, "low": [0.1, 0.55], "high": [0.55, 1.0], "status": "ok"}
    for pair in ("injections_low_bf_vs_tier_a", "injections_high_bf_vs_tier_a", "tier_a_vs_negatives"):
        assert pair in fs["per_layer"][PENULTIMATE]["probe_auc"] and pair in fs["per_layer"][PENULTIMATE]["frechet"]
    # penultimate dim 32 > 12 per group: the Fréchet ratio, hence "no gap", cannot be established
    rule = fs["realism_rule"]
    assert set(rule["comparisons"]) == {"injections_low_bf", "injections_high_bf"}
    for comp in rule["comparisons"].values():
        assert comp["frechet_ratio"] is None and comp["verdict"] in ("realism gap", "not computable")
    assert (out / "evaluate" / "feature_space_embedding.png").stat().st_size > 1000
    assert fs["embedding"]["method"] == ("umap" if umap_available() else "pca")
    assert fs["embedding"]["groups"] == {g: counts[g] for g in grp.GROUPS if counts[g]}
    # the model card renders the evaluator's own tables, notes and figures
    from dhs_eval.card import section
    text = section(out)
    for piece in ("feature_space: groups (held-out test, val)", "feature_space: penultimate layer (dim 32)",
                  "realism-gap rule (Q2.2)", "| tier_a | Tier-A real lenses (tier A) | " + str(counts["tier_a"]),
                  "Verdict: **", "feature_space_embedding.png"):
        assert piece in text


def test_tier_a_rows_are_label_1_tier_a_or_reported_empty():
    rng = np.random.default_rng(0)
    table = pa.table({"label": [1, 1, 1, 0, 1, 1], "tier": ["A", "B", None, "A", "A", "A"]})
    rows, status = grp.tier_a_rows(table, 10, rng)
    assert status == "ok" and sorted(rows.tolist()) == [0, 4, 5]  # row 3 is tier A but not a lens
    rows, _ = grp.tier_a_rows(table, 2, rng)
    assert len(rows) == 2 and set(rows.tolist()) <= {0, 4, 5}
    rows, status = grp.tier_a_rows(pa.table({"label": [1, 0]}), 10, rng)
    assert rows.size == 0 and "no tier column" in status
    rows, status = grp.tier_a_rows(pa.table({"label": [1, 1], "tier": ["B", None]}), 10, rng)
    assert rows.size == 0 and "no Tier-A lens" in status


def test_beta_frac_split_must_lie_inside_the_prior():
    comp, config = plugins.resolve("injector", {"name": "model1", "prior": {"beta_frac": [0.2, 0.9]}})
    low, high, info = grp.beta_frac_configs(comp, config, 0.5, "evaluate.feature_space")
    assert low.prior.beta_frac == (0.2, 0.5) and high.prior.beta_frac == (0.5, 0.9)
    assert low.prior.theta_e == high.prior.theta_e == config.prior.theta_e  # nothing else changes
    assert info == {"split": 0.5, "low": [0.2, 0.5], "high": [0.5, 0.9], "status": "ok"}
    for split in (0.1, 0.9, 1.5):
        with pytest.raises(UserError, match=r"evaluate\.feature_space\.beta_frac_split.*\[0\.2, 0\.9\]"):
            grp.beta_frac_configs(comp, config, split, "evaluate.feature_space")


def test_groups_tier_a_and_beta_frac_split(diagnosed):
    from dhs_data.manifest import read_manifest
    from dhs_data.stores import open_store

    _, out, _ = diagnosed
    kw = dict(splits=SPLITS, n_per_group=N_PER_GROUP, injector=INJECTOR, metadata_columns=(), seed=11,
              evaluator="feature_space")
    plain = grp.draw_groups(out, **kw)
    groups = grp.draw_groups(out, **kw, tier_a=True, beta_frac_split=0.55)
    # the extra groups use their own seeds: the original three groups are unchanged
    for name in ("positives", "negatives", "injections"):
        assert np.array_equal(getattr(plain, name), getattr(groups, name))
    assert plain.tier_a.shape[0] == plain.injections_low_bf.shape[0] == 0
    # Tier-A: every drawn cutout is a held-out label-1, tier-A cutout of the manifest
    manifest = read_manifest(out / "data" / "manifest.parquet").to_pylist()
    keys = [r["cutout_path"] for r in manifest if r["split"] in SPLITS and r["label"] == 1 and r["tier"] == "A"]
    reference = open_store(out / "data").get_many(keys)
    assert len(groups.tier_a) == groups.counts["tier_a"] == min(N_PER_GROUP, len(keys)) > 0
    for image in groups.tier_a:
        assert any(np.array_equal(image, ref) for ref in reference)
    # beta_frac groups: drawn on their side of the split, one injection per image
    low, high = groups.params["injections_low_bf"], groups.params["injections_high_bf"]
    assert len(low["beta_frac"]) == len(groups.injections_low_bf) == groups.counts["injections_low_bf"] > 0
    assert len(high["beta_frac"]) == len(groups.injections_high_bf) == groups.counts["injections_high_bf"] > 0
    assert np.all((low["beta_frac"] >= 0.1) & (low["beta_frac"] <= 0.55))
    assert np.all((high["beta_frac"] >= 0.55) & (high["beta_frac"] <= 1.0))
    # common random numbers: same hosts and stream, so the same theta_E, and each source keeps its
    # quantile u of the area-weighted law beta = sqrt(lo^2 + u (hi^2 - lo^2))
    assert np.array_equal(low["theta_e"], high["theta_e"])
    u_low = (low["beta_frac"] ** 2 - 0.1**2) / (0.55**2 - 0.1**2)
    u_high = (high["beta_frac"] ** 2 - 0.55**2) / (1.0**2 - 0.55**2)
    assert np.allclose(u_low, u_high, atol=1e-9)
    # the unsplit injection group's beta_frac comes from the whole prior
    assert np.all((groups.params["injections"]["beta_frac"] >= 0.1) & (groups.params["injections"]["beta_frac"] <= 1.0))


def test_feature_space_median_scores_match_independent_scoring(diagnosed, tmp_path):
    from dhs_models.inference import load_finder

    _, out, _ = diagnosed
    comp = plugins.get("evaluator", "feature_space")
    cfg = comp.Config(n_per_group=N_PER_GROUP, injector=INJECTOR, layers=["backbone.units.0"])
    result = comp.impl(cfg).evaluate(None, tmp_path, EvaluationContext(run_dir=out, seed=11))
    # the same cutouts (same seed) scored the ordinary way: checkpoint -> preprocess -> sigmoid
    groups = grp.draw_groups(out, splits=SPLITS, n_per_group=N_PER_GROUP, injector=INJECTOR, metadata_columns=(),
                             seed=11, evaluator="feature_space", tier_a=True, beta_frac_split=0.55)
    finder = load_finder(out / "train" / "best.pt")
    for group in grp.GROUPS:
        images = getattr(groups, group)
        summary = result["groups"][group]
        assert summary["n"] == len(images) > 0
        assert summary["median_score"] == pytest.approx(float(np.median(finder.score(images))), abs=1e-6)
    for group in ("tier_a", "injections_low_bf", "injections_high_bf", "negatives"):
        assert result["headline"][f"median_score_{group}"] == result["groups"][group]["median_score"]
    assert result["embedding"]["method"] == ("umap" if umap_available() else "pca")
    assert result["figures"] == ["feature_space_probe_auc.png", "feature_space_embedding.png"]
    assert (tmp_path / "feature_space_embedding.png").stat().st_size > 1000


@pytest.mark.skipif(umap_available(), reason="umap-learn is installed here")
def test_umap_request_without_umap_learn_is_a_user_error(diagnosed, tmp_path):
    _, out, _ = diagnosed
    comp = plugins.get("evaluator", "feature_space")
    with pytest.raises(UserError, match=r"evaluate\.feature_space\.embedding_method.*pip install umap-learn"):
        comp.impl(comp.Config(embedding_method="umap")).evaluate(None, tmp_path, EvaluationContext(run_dir=out))
    with pytest.raises(ValidationError):
        comp.Config(embedding_method="tsne")
    # "auto" falls back to PCA
    coords, info = project_2d(np.random.default_rng(0).normal(size=(10, 4)), method="auto")
    assert info["method"] == "pca" and coords.shape == (10, 2)


def test_pca_map_matches_scikit_learn():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    # correlated features on very different scales, plus a constant (dead) channel
    base = rng.normal(size=(40, 3))
    x = np.c_[base @ rng.normal(size=(3, 5)) * [1, 10, 100, 0.1, 1], rng.normal(size=40), np.full(40, 7.0)]
    coords, info = project_2d(x, method="pca")
    reference = PCA(n_components=2).fit(StandardScaler().fit_transform(x))
    ref_coords = reference.transform(StandardScaler().fit_transform(x))
    signs = np.sign((coords * ref_coords).sum(axis=0))  # each axis is defined up to its sign
    assert np.allclose(coords * signs, ref_coords, atol=1e-9)
    assert np.allclose(info["explained_variance_ratio"], reference.explained_variance_ratio_)
    assert info["method"] == "pca"
    with pytest.raises(ValueError, match="at least 3"):
        project_2d(x[:2], method="pca")
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(x, method="tsne")


def _fd(distance):
    return {"distance": distance, "status": "ok"}


def _probe(auc):
    return {"auc": auc, "status": "ok"}


def test_realism_rule_is_ratio_or_probe():
    na = {"distance": math.nan, "status": "not computable: needs more samples than dimensions"}
    kw = dict(ratio_rule=2.0, probe_rule=0.85)
    # the published result: FD 219.7 against a smaller FD(real, negatives), probe 0.991
    gap = realism_rule(_fd(219.7), _fd(50.0), _probe(0.991), **kw)
    assert gap["verdict"] == "realism gap" and gap["frechet_ratio"] == pytest.approx(219.7 / 50.0)
    assert len(gap["because"]) == 2
    assert realism_rule(_fd(3.0), _fd(1.0), _probe(0.6), **kw)["verdict"] == "realism gap"  # ratio alone
    assert realism_rule(_fd(1.5), _fd(1.0), _probe(0.9), **kw)["verdict"] == "realism gap"  # probe alone
    assert realism_rule(_fd(2.0), _fd(1.0), _probe(0.85), **kw)["verdict"] == "no realism gap"  # limits are strict
    # an "or" rule: a probe over the limit shows a gap even without the Fréchet ratio ...
    assert realism_rule(na, _fd(1.0), _probe(0.95), **kw)["verdict"] == "realism gap"
    # ... but "no gap" needs both criteria
    low = realism_rule(na, _fd(1.0), _probe(0.6), **kw)
    assert low["verdict"] == "not computable" and "Fréchet ratio not computable" in low["status"]
    zero = realism_rule(_fd(1.0), _fd(0.0), _probe(0.6), **kw)
    assert zero["verdict"] == "not computable" and "= 0" in zero["status"]
    empty = {"auc": math.nan, "status": "not computable: an empty group"}
    assert realism_rule(_fd(1.0), _fd(1.0), empty, **kw)["verdict"] == "not computable"


def test_arc_morphology_end_to_end(diagnosed):
    res, out, evaluators = diagnosed
    am = evaluators["arc_morphology"]
    counts = am["counts"]
    for name in ("high_frequency_fraction", "structure_tensor_anisotropy", "colour_gradient_coherence",
                 "local_variance_ratio"):
        entry = am["statistics"][name]
        assert entry["real"]["n"] == counts["positives"] and entry["injected_arcs"]["n"] == counts["injections"]
        for other in ("injected_arcs", "injected_residuals"):
            ks = entry[f"ks_real_vs_{other}"]
            assert ks["status"] == "ok" and 0.0 <= ks["statistic"] <= 1.0 and 0.0 <= ks["p_value"] <= 1.0
        for sample in ("real", "injected_arcs", "injected_residuals"):
            if name != "local_variance_ratio" and entry[sample]["n_nan"] < entry[sample]["n"]:
                assert 0.0 <= entry[sample]["median"] <= 1.0  # the three fractions are bounded
    # noise-free rendered arcs have no power above half Nyquist; real residuals carry noise
    hf = am["statistics"]["high_frequency_fraction"]
    assert hf["injected_arcs"]["median"] < hf["real"]["median"]
    assert (out / "evaluate" / "arc_morphology_histograms.png").stat().st_size > 1000
    assert all(math.isfinite(v) for k, v in res.metrics.items() if k.startswith("evaluate.arc_morphology."))
    assert "evaluate.arc_morphology.high_frequency_fraction_ks" in res.metrics


def test_unknown_injector_is_a_spec_error(tmp_path):
    from dhs_core.errors import SpecError
    spec = {"run": {"name": "x", "seed": 1, "out_dir": str(tmp_path / "x")},
            "data": {"name": "synthetic", "n_hosts": 20, "stamp": 64},
            "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
            "train": {"epochs": 1},
            "evaluate": [{"name": "feature_space", "injector": {"name": "no_such_injector"}}]}
    with pytest.raises(SpecError, match="model1"):
        run(spec)
