"""The Paper IV parity specs validate, carry the published hyperparameters, and each runs one
epoch on a tiny on-disk survey through ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synthdata import make_survey

from dhs_core import run
from dhs_core.spec import load_spec

SPEC_DIR = Path(__file__).resolve().parents[3] / "examples" / "papers" / "paperIV-parity"
SPECS = sorted(p.name for p in SPEC_DIR.glob("*.toml"))

# published protocol: model, lr, schedule, micro, effective, epochs, warmup, freeze
PUBLISHED = {
    "efficientnet_v2_s_step.toml": ("efficientnet_v2_s", 3.88e-4, ("step", 130), 64, 512, 160, 5, 5),
    "efficientnet_v2_s_cosine.toml": ("efficientnet_v2_s", 3.88e-4, ("cosine", 160), 64, 512, 160, 5, 5),
    "efficientnet_v2_s_finetune.toml": ("efficientnet_v2_s", 5e-5, ("cosine", 60), 64, 512, 60, 3, 0),
    "bottlenecked_resnet.toml": ("bottlenecked_resnet", 5e-4, ("step", 80), 128, 2048, 160, 0, 0),
    "resnet18.toml": ("resnet18", 5e-4, ("step", 80), 128, 2048, 160, 0, 0),
}


def test_every_published_run_has_a_spec():
    assert set(SPECS) == set(PUBLISHED)


@pytest.mark.parametrize("name", SPECS)
def test_spec_carries_published_hyperparameters(name):
    spec = load_spec(SPEC_DIR / name)[0].spec
    model, lr, (sched, when), micro, eff, epochs, warmup, freeze = PUBLISHED[name]
    t = spec.train
    assert spec.model.name == model and t.optimizer.lr == lr and t.schedule.name == sched
    assert (t.schedule.step_epoch if sched == "step" else t.schedule.t_max) == when
    assert (t.micro_batch, t.effective_batch, t.epochs, t.warmup_epochs, t.freeze_backbone_epochs) == (
        micro, eff, epochs, warmup, freeze)
    if sched == "step":
        assert t.schedule.factor == 0.5
    if freeze:  # the published runs froze an ImageNet-pretrained backbone
        assert spec.model.pretrained == "imagenet"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return make_survey(tmp_path_factory.mktemp("survey"))


@pytest.fixture
def imagenet_cache(tmp_path_factory, monkeypatch):
    """A torch cache holding a stand-in for torchvision's EfficientNetV2-S ImageNet file (the
    specs ask for "imagenet"; tests cannot download it)."""
    import torchvision

    home = tmp_path_factory.getbasetemp() / "torch_home"
    path = home / "hub" / "checkpoints" / "efficientnet_v2_s-dd5fe13b.pth"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torchvision.models.efficientnet_v2_s().state_dict(), path)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return path


def tiny(survey: Path, out: Path) -> list[str]:
    return [
        f"run.out_dir={out}", f"data.path={survey}", "data.stamp=32", "data.split.scheme=manifest",
        "preprocess.annulus=outer_20pct", "train.epochs=1", "train.micro_batch=4", "train.effective_batch=8",
    ]


@pytest.mark.parametrize("name", [s for s in SPECS if s not in ("efficientnet_v2_s_step.toml",
                                                               "efficientnet_v2_s_finetune.toml")])
def test_spec_runs_one_epoch(name, survey, tmp_path, imagenet_cache):
    res = run(SPEC_DIR / name, tiny(survey, tmp_path / "run"))
    assert res.stages["train"] == "ran"
    assert (tmp_path / "run" / "train" / "scores.parquet").is_file()


def test_step_then_finetune_from_its_best(survey, tmp_path, imagenet_cache):
    run(SPEC_DIR / "efficientnet_v2_s_step.toml", tiny(survey, tmp_path / "step"))
    best = tmp_path / "step" / "train" / "best.pt"
    logs: list[str] = []
    run(SPEC_DIR / "efficientnet_v2_s_finetune.toml",
        [*tiny(survey, tmp_path / "ft"), f"train.init_weights={best}"], log=logs.append)
    assert any("initialised weights from" in m for m in logs)
    ft = torch.load(tmp_path / "ft" / "train" / "last.pt", weights_only=True)
    assert ft["spec"]["train"]["init_weights"] == str(best)
