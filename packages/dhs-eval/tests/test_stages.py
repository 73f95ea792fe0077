"""The evaluate and report stages end to end through dhs_core.run, on fixture stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixture_plugin import fixture_stages, make_manifest, make_scores
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import roc_auc_score

import dhs_core
from dhs_core import Section, Stage, hookimpl, plugins
from dhs_core.errors import UserError
from dhs_eval.predictions import build_predictions


def _spec(tmp_path, **sections):
    return {"run": {"name": "evaltest", "seed": 7, "out_dir": str(tmp_path / "run")}, **sections}


FULL = {"fixture_data": {}, "fixture_train": {}, "fixture_selection": {},
        "evaluate": [{"name": "classification", "n_bootstrap": 50}]}


def test_evaluate_and_report_end_to_end(tmp_path):
    with fixture_stages():
        result = dhs_core.run(_spec(tmp_path, **FULL))
        assert result.stages["evaluate"] == "ran" and result.stages["report"] == "ran"
        run = result.run_dir
        preds = pq.read_table(run / "evaluate" / "predictions.parquet")
        assert preds.column_names[:7] == ["galaxy_id", "split", "label", "tier", "pool", "confuser_category", "score"]
        scores = pq.read_table(run / "train" / "scores.parquet")
        assert preds.num_rows == scores.num_rows
        metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
        assert metrics["predictions"]["n_nan_scores"] == 4
        test = metrics["evaluators"]["classification"]["splits"]["test"]
        # independent reference: scikit-learn on the test rows with a valid score
        manifest = pq.read_table(run / "data" / "manifest.parquet").to_pydict()
        label_of = dict(zip(manifest["galaxy_id"], manifest["label"]))
        sc = scores.to_pydict()
        rows = [(label_of[g], s) for g, sp, s in zip(sc["galaxy_id"], sc["split"], sc["score"])
                if sp == "test" and not math.isnan(s)]
        y, s = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        assert test["auc"] == pytest.approx(roc_auc_score(y, s))
        assert test["pauc"]["0.001"]["value"] == pytest.approx(roc_auc_score(y, s, max_fpr=1e-3))
        assert test["n_positives"] == y.sum() and test["n_negatives"] == (y == 0).sum()
        assert result.metrics["evaluate.test_auc"] == pytest.approx(test["auc"])
        # the FPR 1e-4 row cannot be resolved by ~230 negatives, and says so
        row = next(r for r in test["tpr_at_fpr"] if r["target_fpr"] == 1e-4)
        assert row["tpr"] is None and "not resolvable" in row["status"]
        strata = test["strata"]
        assert [p["stratum"] for p in strata["recall_by_tier"]] == ["A", "B"]
        assert {p["stratum"] for p in strata["fpr_by_pool"]} == {"N1", "N2"}
        assert "by_psfsize_r" in strata and "by_theta_e" not in strata
        for png in ("classification_roc.png", "classification_calibration_test.png", "classification_calibration_val.png"):
            assert (run / "evaluate" / png).stat().st_size > 1000
        card = (run / "MODEL_CARD.md").read_text()
        # run-level parts, then every enabled stage's own section in pipeline order, then artifacts
        section_of = {"data": "## Data (fixture)", "train": "## Training run (fixture)",
                      "evaluate": "## Evaluation metrics", "selection_function": "## Selection function (fixture)"}
        order = [section_of[name] for name in result.stages if name in section_of]  # the order stages ran in
        assert len(order) == 4
        headings = ("## Identification", *order, "## Artifacts", "## Steps to reproduce")
        positions = [card.index(h) for h in headings]
        assert positions == sorted(positions)
        assert f"| ROC AUC [95 % bootstrap CI] | {test['auc']:.4f} [" in card
        edge = next(p for p in strata["fpr_by_confuser_category"] if p["stratum"] == "edge_on_proxy")
        assert f"edge_on_proxy: {edge['estimate']:.4f} ({edge['k']}/{edge['n']})" in card and "Epochs: 3" in card
        assert "[classification_roc.png](evaluate/classification_roc.png)" in card
        cells = pq.read_table(run / "selection_function" / "cells.parquet").to_pydict()
        assert f"Detected: {sum(cells['n_detected']):,}/{sum(cells['n_ok']):,}" in card
        for listed in ("(data/manifest.parquet)", "(train/scores.parquet)", "(evaluate/metrics.json)",
                       "(selection_function/cells.parquet)", "(report/strata.csv)", "(report/selection_cells.csv)"):
            assert listed in card
        assert (run / "report" / "training_curves.png").is_file()
        assert (run / "report" / "completeness_theta_e_psfsize_r.png").is_file()
        assert (run / "report" / "completeness_theta_e_depth_m5.png").is_file()
        # resume: nothing changed, nothing reruns
        again = dhs_core.run(_spec(tmp_path, **FULL))
        assert again.stages["evaluate"] == "skipped" and again.stages["report"] == "skipped"


def test_report_shows_the_sections_of_enabled_stages_only(tmp_path):
    with fixture_stages():
        result = dhs_core.run(_spec(tmp_path, fixture_data={"n": 200}))
        card = (result.run_dir / "MODEL_CARD.md").read_text()
    assert "evaluate" not in result.stages
    assert "## Data (fixture)\n\n- Cutouts in the manifest: 200" in card
    for absent in ("## Training run", "## Evaluation metrics", "## Selection function", "| train/", "| evaluate/"):
        assert absent not in card
    # a run without evaluation: the report's strata table is listed as not run
    assert "strata.csv (Not run)" in card


def test_an_enabled_stage_without_its_artifact_says_not_run(tmp_path):
    from dhs_eval.card import section

    assert section(tmp_path) == "## Evaluation metrics\n\nNot run (evaluate/metrics.json)."


class ThirdPartySection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # the number the stage writes
    value: int = 3


class ThirdPartyStage(Stage):
    """A stage from a package dhs-eval knows nothing about."""

    name = "lensing_census"
    sections = {"lensing_census": Section(ThirdPartySection)}
    trigger = "lensing_census"
    needs = ("data/manifest.parquet",)
    produces = ("lensing_census/census.json",)

    def run(self, ctx):
        rows = pq.read_metadata(ctx.path("data/manifest.parquet")).num_rows
        (ctx.stage_dir / "census.json").write_text(json.dumps({"rows": rows, "value": ctx.spec.lensing_census.value}))

    def card_section(self, run_dir):
        census = json.loads((run_dir / "lensing_census" / "census.json").read_text())
        return f"## Lensing census\n\n- {census['rows']:,} rows counted, value {census['value']}"


class ThirdPartyPlugin:
    @hookimpl
    def register_stages(self, register):
        register("lensing_census", ThirdPartyStage())


def test_a_third_party_stage_section_appears_in_the_model_card(tmp_path):
    with fixture_stages():
        plugins.register_plugin(ThirdPartyPlugin(), name="lensing-census-test", distribution="lensing-census")
        try:
            result = dhs_core.run(_spec(tmp_path, fixture_data={"n": 150}, lensing_census={"value": 11}))
        finally:
            plugins.unregister_plugin("lensing-census-test")
    assert result.stages["lensing_census"] == "ran" and result.stages["report"] == "ran"
    card = (result.run_dir / "MODEL_CARD.md").read_text()
    assert "## Lensing census\n\n- 150 rows counted, value 11" in card
    assert card.index("## Data (fixture)") < card.index("## Lensing census") < card.index("## Artifacts")
    assert "[census.json](lensing_census/census.json)" in card


def test_predictions_refuse_scores_missing_from_the_manifest():
    manifest = make_manifest(100, 0)
    scores = make_scores(manifest, 0)
    stray = pa.table({"galaxy_id": ["X1"], "split": ["test"], "score": [0.5]})
    with pytest.raises(UserError, match="not in data/manifest.parquet.*'X1'"):
        build_predictions(pa.concat_tables([scores, stray]), manifest)
    with pytest.raises(UserError, match="not unique"):
        build_predictions(pa.concat_tables([scores, scores]), manifest)
    with pytest.raises(UserError, match="lacks column"):
        build_predictions(scores.drop(["score"]), manifest)
    truth = pa.table({"galaxy_id": manifest.column("galaxy_id"), "theta_e": np.linspace(0.5, 3, 100)})
    preds = build_predictions(scores, manifest, truth)
    assert "theta_e" in preds.column_names and not math.isnan(preds.column("theta_e")[0].as_py())
