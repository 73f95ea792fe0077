"""The evaluate and report stages end to end through dhs_core.run, on fixture stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixture_plugin import fixture_stages, make_manifest, make_scores
from sklearn.metrics import roc_auc_score

import dhs_core
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
        for heading in ("## Identification", "## Architecture and hyperparameters", "## Data", "## Training run",
                        "## Validation metrics", "## Evaluation metrics", "## Selection function", "## Artifacts",
                        "## Steps to reproduce"):
            assert heading in card
        assert f"ROC AUC: {test['auc']:.4f}" in card
        assert "FPR edge_on_proxy @0.5 = " in card and "Epochs: 3" in card
        assert (run / "report" / "training_curves.png").is_file()
        assert (run / "report" / "completeness_theta_e_psfsize_r.png").is_file()
        assert (run / "report" / "completeness_theta_e_psfdepth_r.png").is_file()
        # resume: nothing changed, nothing reruns
        again = dhs_core.run(_spec(tmp_path, **FULL))
        assert again.stages["evaluate"] == "skipped" and again.stages["report"] == "skipped"


def test_report_says_not_run_for_absent_stages(tmp_path):
    with fixture_stages():
        result = dhs_core.run(_spec(tmp_path, fixture_data={"n": 200}))
        card = (result.run_dir / "MODEL_CARD.md").read_text()
    assert "evaluate" not in result.stages
    assert "## Training run\n\nNot run (no train/metrics.jsonl)." in card
    assert "## Evaluation metrics\n\nNot run (no evaluate/metrics.json)." in card
    assert "## Selection function\n\nNot run" in card
    assert "| all |" in card  # data counts are filled from the manifest


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
