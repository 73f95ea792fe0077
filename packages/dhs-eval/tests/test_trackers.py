"""Experiment trackers through the lifecycle hooks, read back with the trackers' own readers:
TensorBoard's EventAccumulator and MLflow's client on a local file store."""

from __future__ import annotations

import os
import warnings

import pytest
from fixture_plugin import fixture_stages

import dhs_core
from dhs_core import hookimpl, plugins
from dhs_core.errors import LifecycleHookWarning

FULL = {"fixture_data": {"n": 400}, "fixture_train": {"epochs": 3}, "fixture_selection": {},
        "evaluate": [{"name": "classification", "n_bootstrap": 20}]}


def _spec(tmp_path, **trackers):
    return {"run": {"name": "trackertest", "seed": 3, "out_dir": str(tmp_path / "run")}, **FULL,
            "trackers": trackers}


def test_tensorboard_and_mlflow_record_the_run(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with fixture_stages():
        result = dhs_core.run(_spec(tmp_path, tensorboard={}, mlflow={"experiment": "dhs-test"}))
    run = result.run_dir

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    loss = acc.Scalars("epoch/train_loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([1.0, 0.5, 1 / 3])
    assert acc.Scalars("results/evaluate.test_auc")[0].value == pytest.approx(result.metrics["evaluate.test_auc"])
    assert "classification/roc" in tags["images"]
    assert "selection_function/completeness_theta_e_psfsize_r" in tags["images"]
    roc = acc.Images("classification/roc")[0]
    assert roc.width > 100 and roc.height > 100 and roc.encoded_image_string[:4] == b"\x89PNG"

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    exp = client.get_experiment_by_name("dhs-test")
    (ml,) = client.search_runs([exp.experiment_id])
    assert ml.info.status == "FINISHED"
    assert ml.data.params["fixture_train.epochs"] == "3"
    assert ml.data.params["run.seed"] == "3"
    history = client.get_metric_history(ml.info.run_id, "val_auc")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(1, 0.82), (2, 0.84), (3, 0.86)]
    assert ml.data.metrics["evaluate.test_auc"] == pytest.approx(result.metrics["evaluate.test_auc"])
    assert {a.path for a in client.list_artifacts(ml.info.run_id)} >= {"MODEL_CARD.md", "report.html"}


class RaisingTracker:
    calls = 0

    @hookimpl
    def dhs_epoch_end(self, run, epoch, metrics):
        RaisingTracker.calls += 1
        raise ConnectionError("tracking server unreachable")

    @hookimpl
    def dhs_run_finished(self, run, results):
        raise RuntimeError("upload failed")


def test_a_tracker_that_raises_does_not_fail_the_run(tmp_path):
    before = plugins.lifecycle_failures()
    with fixture_stages():
        plugins.register_plugin(RaisingTracker(), name="raising-tracker", distribution="raising-tracker")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = dhs_core.run({"run": {"name": "t", "seed": 3, "out_dir": str(tmp_path / "run")}, **FULL})
        finally:
            plugins.unregister_plugin("raising-tracker")
    assert result.stages["report"] == "ran" and (result.run_dir / "MODEL_CARD.md").is_file()
    after = plugins.lifecycle_failures()
    assert after.get(("raising-tracker", "dhs_epoch_end"), 0) - before.get(("raising-tracker", "dhs_epoch_end"), 0) == 3
    assert after.get(("raising-tracker", "dhs_run_finished"), 0) - before.get(("raising-tracker", "dhs_run_finished"), 0) == 1
    messages = [str(w.message) for w in caught if issubclass(w.category, LifecycleHookWarning)]
    assert len(messages) == 4 and "tracking server unreachable" in messages[0]


def test_a_broken_builtin_tracker_is_a_warning(tmp_path):
    pytest.importorskip("tensorboard")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the event directory should be")
    with fixture_stages():
        with pytest.warns(LifecycleHookWarning, match="dhs_run_started"):
            result = dhs_core.run(_spec(tmp_path, tensorboard={"log_dir": str(blocker / "tb")}))
    assert result.stages["report"] == "ran"
