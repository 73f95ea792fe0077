"""Injection-based diagnostics evaluators: embedding extraction, and both evaluators end to end through the runner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dhs_core import plugins, run
from dhs_core.errors import UserError
from dhs_eval.evaluators.base import EvaluationContext
from dhs_inject.diagnostics.embeddings import PENULTIMATE, extract_embeddings, stage_end_layers
from dhs_models import build_model

EVALUATORS = sorted(n for n, c in plugins.components("evaluator").items() if c.distribution == "dhs-inject")
N_PER_GROUP = 12


def test_dhs_inject_registers_both_diagnostics():
    assert EVALUATORS == ["arc_morphology", "feature_space"]


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
    # fast_kernel off: compiling the fused kernel costs more than these few injections
    injector = {"name": "model1", "supersample": 1, "fast_kernel": False}
    spec = {
        "run": {"name": "diag", "seed": 5, "out_dir": str(out)},
        # the synthetic survey renders 64 or 101 px stamps only
        "data": {"name": "synthetic", "n_hosts": 200, "stamp": 64, "positive_fraction": 0.3},
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
