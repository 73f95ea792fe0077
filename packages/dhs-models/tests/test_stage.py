"""The train stage end to end through the pipeline runner, on a tiny on-disk survey."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from synthdata import data_section, make_survey

from dhs_core import run

MODEL = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_survey(tmp_path_factory.mktemp("survey"))


def spec(manifest, out, epochs=1, **train):
    return {
        "run": {"name": "t", "seed": 3, "out_dir": str(out)},
        "data": data_section(manifest),
        "model": MODEL,
        "train": {"epochs": epochs, "micro_batch": 8, "effective_batch": 16, "optimizer": {"lr": 2e-3},
                  "loss": {"name": "bce", "weighting": "tier"}, **train},
    }


def test_train_stage_outputs(manifest, tmp_path):
    res = run(spec(manifest, tmp_path / "r"))
    assert res.stages["train"] == "ran"
    out = tmp_path / "r" / "train"
    for name in ("best.pt", "last.pt", "metrics.jsonl", "scores.parquet"):
        assert (out / name).is_file()
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    assert set(scores) >= {"galaxy_id", "split", "score"}
    assert sorted(set(scores["split"])) == ["test", "val"] and len(scores["score"]) == 16
    assert all(0.0 <= s <= 1.0 for s in scores["score"])
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["architecture"]["name"] == "bottlenecked_resnet"
    assert ckpt["spec"]["train"]["epochs"] == 1
    assert "train.best_val_auc" in res.metrics
    # unchanged spec: the stage is skipped on re-run
    assert run(spec(manifest, tmp_path / "r")).stages["train"] == "skipped"


def test_extending_a_run_resumes_from_last_and_matches_unbroken(manifest, tmp_path):
    run(spec(manifest, tmp_path / "unbroken", epochs=2))
    run(spec(manifest, tmp_path / "broken", epochs=1))
    logs: list[str] = []
    run(spec(manifest, tmp_path / "broken", epochs=2), log=logs.append)
    assert any("resuming" in m for m in logs)
    a = pq.read_table(tmp_path / "unbroken" / "train" / "scores.parquet").to_pydict()
    b = pq.read_table(tmp_path / "broken" / "train" / "scores.parquet").to_pydict()
    assert a == b
    lines = [json.loads(x) for x in (tmp_path / "broken" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]


def test_bad_effective_batch_is_a_spec_error(manifest, tmp_path):
    from dhs_core.errors import SpecError

    with pytest.raises(SpecError, match="not a multiple of micro_batch"):
        run(spec(manifest, tmp_path / "x", effective_batch=20))


def test_unknown_architecture_lists_valid(manifest, tmp_path):
    from dhs_core.errors import SpecError

    bad = spec(manifest, tmp_path / "x")
    bad["model"] = {"name": "resnet1000"}
    with pytest.raises(SpecError, match="bottlenecked_resnet"):
        run(bad)


def test_accumulation_steps_is_not_an_option(manifest, tmp_path):
    """Accumulation follows from effective_batch / micro_batch (per rank under DDP); there is no
    separate knob, so a spec that sets one fails validation as an unknown field."""
    from dhs_core.errors import SpecError

    with pytest.raises(SpecError, match="accumulation_steps"):
        run(spec(manifest, tmp_path / "x", accumulation_steps=2))
    assert not (tmp_path / "x").exists()


def test_freezing_a_random_backbone_is_a_spec_error_unless_allowed(manifest, tmp_path):
    """freeze_backbone_epochs trains only the head at first: on a random backbone that is training
    on random features, refused before anything is written unless said to be meant."""
    from dhs_core.errors import SpecError
    from dhs_core.runner import plan

    frozen = spec(manifest, tmp_path / "x", freeze_backbone_epochs=2)
    with pytest.raises(SpecError, match="allow_random_freeze") as info:
        plan(frozen)
    assert "freeze_backbone_epochs = 2" in str(info.value) and "model.pretrained" in str(info.value)
    assert not (tmp_path / "x").exists()
    plan(spec(manifest, tmp_path / "x", freeze_backbone_epochs=2, allow_random_freeze=True))
    # fine-tuning from another run's weights is a learnt backbone too
    plan(spec(manifest, tmp_path / "x", freeze_backbone_epochs=2, init_weights=str(tmp_path / "best.pt")))
