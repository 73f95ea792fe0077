"""examples/papers/ablation-gen5.toml: the published ablation matrix as one sweep of named points,
run at tiny size on the synthetic survey; its comparison gives each metric with its interval and
the paired DeLong test of every point against the baseline gen5a."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dhs_core import run
from dhs_core.spec import load_spec

SPEC = Path(__file__).resolve().parents[3] / "examples" / "papers" / "ablation-gen5.toml"
POINTS = ["gen5a", "gen4", "gen5b", "gen5c", "gen5a_im2"]


def test_points_change_only_their_factor():
    points = {p.name: p.spec for p in load_spec(SPEC)}
    assert list(points) == POINTS
    base = points["gen5a"]
    assert tuple(base.preprocess.annulus) == (32.5, 45.0) and base.model.pretrained == "imagenet"
    assert base.train.loss.weighting == "none" and base.selection_function.injector.name == "model1"
    assert tuple(points["gen4"].preprocess.annulus) == (20.0, 32.0)
    assert points["gen5b"].model.pretrained is False and points["gen5b"].train.freeze_backbone_epochs == 0
    assert points["gen5c"].train.loss.weighting == "tier" and points["gen5c"].train.loss.tier_weights["B"] == 0.5
    assert points["gen5a_im2"].selection_function.injector.name == "model2"
    dumps = {n: s.model_dump(mode="json") for n, s in points.items()}
    differing = {n: sorted(k for k in dumps[n] if dumps[n][k] != dumps["gen5a"][k]) for n in POINTS[1:]}
    assert differing == {"gen4": ["preprocess"], "gen5b": ["model", "train"], "gen5c": ["train"],
                         "gen5a_im2": ["selection_function"]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A local weights file standing in for the ImageNet start of a small timm backbone."""
    import timm

    path = tmp_path_factory.mktemp("w") / "resnet10t.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), path)
    return path


def test_ablation_sweep_runs_and_compares_with_the_baseline(tmp_path, weights):
    out = tmp_path / "ablation"
    overrides = [
        f"run.out_dir={out}",
        'data={ name = "synthetic", n_hosts = 160, stamp = 101, positive_fraction = 0.3 }',
        # a small timm backbone in place of EfficientNetV2-S (same options: pretrained, head_dropout)
        f'model={{ name = "timm", arch = "resnet10t", pretrained = "{weights}" }}',
        "train.epochs=1", "train.micro_batch=16", "train.effective_batch=16", "train.freeze_backbone_epochs=0",
        "train.warmup_epochs=0", "evaluate=[{ name = \"classification\", n_bootstrap = 50, plots = false }]",
        'selection_function.theta_e={ start = 1.5, stop = 1.5, step = 0.25 }',
        "selection_function.psfsize_r_edges=[0.5, 3.0]", "selection_function.depth_mag_edges=[22.0, 27.0]",
        "selection_function.per_cell=4", "selection_function.qa=\"off\"", "selection_function.plots=false",
        "selection_function.injector.fast_kernel=false", "selection_function.injector.supersample=1",
        "selection_function.thresholds={ fixed = [0.5] }", 'selection_function.host_split="test"',
        'selection_function.threshold_split="val"',
    ]
    res = run(SPEC, overrides)
    dirs = [p.run_dir.name for p in res.points]
    assert dirs == [f"{i:03d}_{n}" for i, n in enumerate(POINTS)]
    injectors = {n: json.loads((out / d / "selection_function" / "meta.json").read_text())["injector"]["name"]
                 for n, d in zip(POINTS, dirs)}
    assert injectors == {"gen5a": "model1", "gen4": "model1", "gen5b": "model1", "gen5c": "model1",
                         "gen5a_im2": "model2"}
    ckpt = torch.load(out / dirs[1] / "train" / "best.pt", weights_only=True)
    assert ckpt["preprocess"]["annulus"] == [20.0, 32.0]
    md = (out / "comparison.md").read_text()
    # every metric with its interval, per point
    assert "test ROC AUC [95 % CI]" in md and md.count(" [") > 5
    # the paired DeLong test of each point against the baseline, on the same test cutouts
    table = md[md.index("Paired DeLong"):]
    for d in dirs[1:]:
        row = next(line for line in table.splitlines() if line.startswith(f"| {dirs[0]} vs {d} |"))
        p = row.rstrip(" |").rsplit("|", 1)[-1].strip()
        assert 0.0 <= float(p) <= 1.0, row
    # gen5a_im2 trained exactly as gen5a (same seed, same spec but the injector): identical rankings
    im2 = next(line for line in table.splitlines() if line.startswith(f"| {dirs[0]} vs {dirs[4]} |"))
    assert im2.rstrip(" |").rsplit("|", 1)[-1].strip() == "1"
