"""Trainer behaviour on tiny in-memory data: resume, accumulation, freezing, schedules, failures."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import LinearNet, ToyLenses
from pydantic import ValidationError

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_models import build_model
from dhs_models.training.config import TrainConfig
from dhs_models.training.schedule import lr_at, phase_at
from dhs_models.training.trainer import Trainer, TrainingDiverged

SMALL_NET = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}


def bce():
    return plugins.build("loss", "bce")


def make_trainer(tmp_path, model=None, *, arch=SMALL_NET, loss=None, **train):
    cfg = TrainConfig(**{"epochs": 2, "micro_batch": 8, "augment": False, **train})
    if model is None:
        torch.manual_seed(0)
        model = build_model(arch["name"], **{k: v for k, v in arch.items() if k != "name"})
    spec = {"run": {"seed": 5}, "model": arch, "train": cfg.model_dump(mode="json")}
    return Trainer(model, cfg, loss or bce(), tmp_path, ToyLenses(32, seed=1), ToyLenses(16, seed=2),
                   seed=5, architecture=arch, spec=spec, log=lambda m: None)


def read_metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_gives_identical_final_state(tmp_path):
    cfg = dict(schedule={"name": "cosine", "t_max": 3}, warmup_epochs=1, optimizer={"lr": 3e-3})
    make_trainer(tmp_path / "unbroken", **cfg).fit()
    make_trainer(tmp_path / "broken", **cfg, epochs=1).fit()
    resumed = make_trainer(tmp_path / "broken", **cfg)
    resumed.fit()
    assert resumed.start_epoch == 1
    a = torch.load(tmp_path / "unbroken" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "broken" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ma, mb = read_metrics(tmp_path / "unbroken" / "metrics.jsonl"), read_metrics(tmp_path / "broken" / "metrics.jsonl")
    assert [m["epoch"] for m in mb] == [1, 2]
    for x, y in zip(ma, mb):
        x.pop("seconds"), y.pop("seconds")
        assert x == y


def test_checkpoint_contract_and_metrics(tmp_path):
    trainer = make_trainer(tmp_path, checkpoint_every=1)
    trainer.fit()
    for name in ("best.pt", "last.pt", "epoch_001.pt", "epoch_002.pt", "metrics.jsonl"):
        assert (tmp_path / name).is_file(), name
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"model", "architecture", "preprocess", "epoch", "optimizer", "scheduler", "scaler", "best_metric",
            "rng", "spec"} <= set(ckpt)
    assert ckpt["architecture"]["name"] == "bottlenecked_resnet" and ckpt["epoch"] == 1
    lines = read_metrics(tmp_path / "metrics.jsonl")
    assert len(lines) == 2
    assert {"train_loss", "val_loss", "val_auc", "val_pauc", "val_tpr_at_fpr", "lr", "seconds", "phase"} <= set(lines[0])
    # a model can be rebuilt from the checkpoint through the registry alone
    arch = dict(ckpt["architecture"])
    model = build_model(arch.pop("name"), **arch)
    model.load_state_dict(ckpt["model"])


def test_validation_metrics_come_from_dhs_eval(tmp_path):
    from dhs_eval.metrics import roc_auc

    trainer = make_trainer(tmp_path, epochs=1)
    last = trainer.fit()
    from dhs_models.training.batches import predict

    pred = predict(trainer.model, trainer.val_data, batch_size=8, device=torch.device("cpu"))
    assert last["val_auc"] == pytest.approx(roc_auc(pred["labels"].numpy(), pred["logits"].numpy()))


def test_gradient_accumulation_matches_full_batch(tmp_path):
    def run(micro, sub):
        torch.manual_seed(0)
        t = make_trainer(tmp_path / sub, LinearNet(), epochs=1, micro_batch=micro, effective_batch=16,
                         optimizer={"lr": 1e-2, "weight_decay": 0.0})
        t.fit()
        return t.model.state_dict()

    full, accumulated = run(16, "full"), run(4, "acc")
    for k in full:
        assert torch.allclose(full[k], accumulated[k], atol=1e-6), k


def test_effective_batch_must_be_a_multiple():
    with pytest.raises(ValidationError, match="not a multiple of micro_batch"):
        TrainConfig(epochs=1, micro_batch=64, effective_batch=100)


def test_frozen_backbone_trains_only_the_head(tmp_path):
    torch.manual_seed(0)
    model = LinearNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = make_trainer(tmp_path, model, epochs=1, freeze_backbone_epochs=1)
    t.fit()
    after = t.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["phase"] == "frozen"


def test_learning_rate_schedules_closed_form():
    step = TrainConfig(epochs=160, optimizer={"lr": 3.88e-4}, schedule={"name": "step", "step_epoch": 130,
                                                                        "factor": 0.5}, warmup_epochs=5)
    assert lr_at(step, 0) == pytest.approx(3.88e-6)  # warm-up starts at lr/100
    assert lr_at(step, 5) == pytest.approx(3.88e-4)
    assert lr_at(step, 2) == pytest.approx(3.88e-4 * (0.01 + 0.99 * 2 / 5))
    assert lr_at(step, 129) == pytest.approx(3.88e-4) and lr_at(step, 130) == pytest.approx(1.94e-4)
    cos = TrainConfig(epochs=60, optimizer={"lr": 5e-5}, schedule={"name": "cosine", "t_max": 60})
    assert lr_at(cos, 30) == pytest.approx(2.5e-5) and lr_at(cos, 60) == pytest.approx(0.0, abs=1e-20)
    assert lr_at(cos, 15) == pytest.approx(5e-5 * 0.5 * (1 + math.cos(math.pi / 4)))
    const = TrainConfig(epochs=3)
    assert lr_at(const, 2) == const.optimizer.lr
    assert [phase_at(step, e) for e in (0, 4, 5)] == ["warmup", "warmup", "full"]


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}
    base = bce()

    def flaky(logits, labels, **kw):
        calls["n"] += 1
        loss = base(logits, labels, **kw)
        # 4 training batches + 2 validation calls of epoch 1 are fine; epoch 2 batch 2 is NaN
        return loss * float("nan") if calls["n"] == 8 else loss

    trainer = make_trainer(tmp_path, loss=flaky)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 2"):
        trainer.fit()
    kept = torch.load(tmp_path / "last.pt", weights_only=True)
    assert kept["epoch"] == 0


def test_init_weights_from_other_architecture_is_refused(tmp_path):
    make_trainer(tmp_path / "a", epochs=1).fit()
    other = {"name": "resnet18", "small_input": True}
    trainer = make_trainer(tmp_path / "b", arch=other, epochs=1, init_weights=str(tmp_path / "a" / "best.pt"))
    with pytest.raises(UserError, match="'bottlenecked_resnet'.*'resnet18'"):
        trainer.fit()


def test_init_weights_fine_tune_starts_from_checkpoint(tmp_path):
    first = make_trainer(tmp_path / "a", epochs=1)
    first.fit()
    tuned = make_trainer(tmp_path / "b", epochs=1, init_weights=str(tmp_path / "a" / "best.pt"))
    tuned.init_from(tmp_path / "a" / "best.pt")
    w = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(w[k], v) for k, v in tuned.model.state_dict().items())


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.ReLU(), "architecture": SMALL_NET}, bad)
    trainer = make_trainer(tmp_path / "run", epochs=1, init_weights=str(bad))
    with pytest.raises(UserError, match="pickled code"):
        trainer.fit()


def test_early_stopping(tmp_path):
    trainer = make_trainer(tmp_path, epochs=6, early_stopping={"metric": "val_loss", "patience": 2,
                                                               "min_delta": 1e6})
    trainer.fit()
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 3  # first epoch, then 2 without improvement


def test_tier_weighting_uses_manifest_tiers(tmp_path):
    loss = plugins.build("loss", {"name": "bce", "weighting": "tier"})
    ds = ToyLenses(16, seed=3, tiers=True)
    tier_of = dict(zip(ds.ids, ds.tiers))
    t = make_trainer(tmp_path, loss=loss, epochs=1)
    t.tier_of = tier_of
    t.train_data = t.val_data = ds
    assert math.isfinite(t.fit()["val_loss"])
