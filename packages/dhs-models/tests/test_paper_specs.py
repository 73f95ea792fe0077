"""The Paper IV parity specs carry the published protocol field by field, validate, and each runs
one epoch on a tiny on-disk survey through ``--set`` overrides.

``PUBLISHED`` is the protocol of the earlier pipeline's parity runs as its training records give
it, one row per spec field: (dotted spec path, value, source). A source such as "record 004 §4.1"
names section 4.1 of the earlier pipeline's record 004 (the Paper IV parity record); docs/papers.md
tabulates the same values with the same sources and explains where the records disagree. Values
no record states, which a spec had to choose, say so in their source ("not recorded: ...").
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from pydantic import BaseModel
from synthdata import make_survey

from dhs_core import run
from dhs_core.spec import load_spec
from dhs_data.manifest import read_manifest, write_manifest

SPEC_DIR = Path(__file__).resolve().parents[3] / "examples" / "papers" / "paperIV-parity"
SPECS = sorted(p.name for p in SPEC_DIR.glob("*.toml"))


class Absent:
    """The spec's component has no such option (e.g. ``pretrained`` of an always-scratch network)."""

    def __repr__(self) -> str:
        return "<no such option>"


ABSENT = Absent()
STEP_BEST = "runs/paperIV-effv2s-step/train/best.pt"

# every parity run (record 004 §2-4: AdamW, weight decay 1e-4, BCE mean unweighted, AMP, 101 px
# raw_robust, no early stopping; §7: checkpoints)
SHARED = [
    ("run.seed", 42, "record 004 §2: the parity runs' seed (the earlier baseline used 1337, record 000 §3)"),
    ("data.stamp", 101, "record 004 §2: 101x101 px cutouts"),
    ("data.split.scheme", "healpix", "record 000 §3: HEALPix pixel split"),
    ("data.split.nside", 128, "record 000 §3"),
    ("data.split.seed", 42, "record 000 §3: split hash seed 42"),
    ("data.split.fractions", {"train": 0.7, "val": 0.3},
     "record 004 §2, §29.1: 70/30, no test split (record 000 §3 and 004 §12.3 say 70/15/15)"),
    ("preprocess.name", "raw_robust", "record 004 §2"),
    ("preprocess.annulus", [20.0, 32.0],
     "record 000 §3; 004 §16.6, §29.2: r = 20-32 px as run (32.5-45 intended; 004 §2 says 'outer 20 % ring')"),
    ("preprocess.clip", 10.0, "record 000 §3: clip at +-10"),
    ("train.optimizer.name", "adamw", "record 004 §2-4"),
    ("train.optimizer.weight_decay", 1e-4, "record 004 §2-4"),
    ("train.loss.name", "bce", "record 004 §2-4: BCE with logits, batch mean"),
    ("train.loss.weighting", "none",
     "record 004 §2: unweighted, Tier-A/B 1.0/1.0 (record 000 §3: Tier-B 0.5; 004 §16.6: 'enabled')"),
    ("train.precision", "auto", "record 004 §2-4: AMP (dhs: mixed precision on a GPU, fp32 on CPU)"),
    ("train.early_stopping", None, "record 004 §2-4: no early stopping"),
    ("train.augment", True, "record 004 §2: flips and quarter turns"),
    ("train.monitor", "val_auc", "record 004 §7: best.pt on a validation-AUC gain"),
    ("train.checkpoint_every", 10, "record 004 §7: epoch_NNN.pt every 10 epochs"),
]

EFFNET_V2 = [  # v2 (record 004 §3.1, §4.1)
    ("model.name", "efficientnet_v2_s", "record 004 §3.1"),
    ("model.pretrained", "imagenet", "record 004 §3.1: ImageNet initialisation"),
    ("model.head_dropout", 0.2, "record 004 §3.1: Dropout 0.2 + Linear(1280, 1)"),
    ("model.stochastic_depth", 0.2, "not recorded: torchvision's default"),
    ("train.micro_batch", 64, "record 004 §4.1"),
    ("train.effective_batch", 512, "record 004 §4.1: 8 accumulation steps"),
    ("train.optimizer.lr", 3.88e-4, "record 004 §4.1"),
    ("train.warmup_epochs", 5, "record 004 §4.1: 5 epochs linear, lr/100 -> lr"),
    ("train.freeze_backbone_epochs", 5, "record 004 §4.1: backbone frozen 5 epochs"),
    ("train.epochs", 160, "record 004 §4.1"),
    ("train.init_weights", None, "record 004 §3.1: from ImageNet, not another run"),
]

PUBLISHED: dict[str, list[tuple[str, object, str]]] = {
    "efficientnet_v2_s_step.toml": SHARED + EFFNET_V2 + [
        ("train.schedule.name", "step", "record 004 §4.1"),
        ("train.schedule.step_epoch", 130, "record 004 §4.1: x0.5 at epoch 130"),
        ("train.schedule.factor", 0.5, "record 004 §4.1"),
    ],
    "efficientnet_v2_s_cosine.toml": SHARED + EFFNET_V2 + [
        ("train.schedule.name", "cosine", "record 004 §4.3: only the schedule changes from v2"),
        ("train.schedule.t_max", 160, "record 004 §4.3: T_max 160"),
        ("train.schedule.eta_min", 0.0, "record 004 §4.3: lr 0 at epoch 160"),
    ],
    "efficientnet_v2_s_finetune.toml": SHARED + [
        ("model.name", "efficientnet_v2_s", "record 004 §4.4"),
        ("model.pretrained", None, "record 004 §4.4: weights from v2's best epoch, not ImageNet"),
        ("model.head_dropout", 0.2, "record 004 §3.1: v2's head"),
        ("model.stochastic_depth", 0.2, "not recorded: v2's (torchvision's default)"),
        ("train.init_weights", STEP_BEST, "record 004 §4.4: initialised from v2's best (epoch 19)"),
        ("train.micro_batch", 64, "record 004 §4.4"),
        ("train.effective_batch", 512, "record 004 §4.4"),
        ("train.optimizer.lr", 5e-5, "record 004 §4.4"),
        ("train.warmup_epochs", 3, "record 004 §4.4: 3 epochs, 5e-7 -> 5e-5"),
        ("train.freeze_backbone_epochs", 0, "record 004 §4.4: no freeze"),
        ("train.schedule.name", "cosine", "record 004 §4.4"),
        ("train.schedule.t_max", 60, "record 004 §4.4: T_max 60"),
        ("train.schedule.eta_min", 0.0, "record 004 §4.4"),
        ("train.epochs", 60, "record 004 §4.4"),
    ],
    "bottlenecked_resnet.toml": SHARED + [
        ("model.name", "bottlenecked_resnet", "record 004 §3.2"),
        ("model.base_ch", 27, "record 004 §3.2"),
        ("model.pretrained", ABSENT, "record 004 §3.2: from scratch (the network has no pretrained option)"),
        ("model.head_dropout", 0.0, "record 004 §3.2: GAP + Linear(216, 1), no dropout recorded"),
        ("train.micro_batch", 128, "record 004 §4.2"),
        ("train.effective_batch", 2048, "record 004 §4.2: 16 accumulation steps"),
        ("train.optimizer.lr", 5e-4, "record 004 §4.2"),
        ("train.warmup_epochs", 0, "record 004 §4.2: no warm-up"),
        ("train.freeze_backbone_epochs", 0, "record 004 §4.2: no freeze"),
        ("train.schedule.name", "step", "record 004 §4.2"),
        ("train.schedule.step_epoch", 80, "record 004 §4.2: x0.5 at epoch 80"),
        ("train.schedule.factor", 0.5, "record 004 §4.2"),
        ("train.epochs", 160, "record 004 §4.2"),
        ("train.init_weights", None, "record 004 §3.2: from scratch"),
    ],
    "resnet18.toml": SHARED + [
        ("model.name", "resnet18", "record 004 §6.5: torchvision ResNet-18"),
        ("model.pretrained", "imagenet",
         "record 004 §6.5: ImageNet (the earlier baseline's ResNet-18 was random, record 000 §2: another run)"),
        ("model.small_input", False, "record 004 §6.5: torchvision's network, ImageNet stem"),
        ("model.head_dropout", 0.0, "record 004 §6.5: no dropout recorded"),
        ("train.micro_batch", 64, "record 004 §6.5"),
        ("train.effective_batch", 512, "record 004 §6.5"),
        ("train.optimizer.lr", 5e-4, "record 004 §6.5"),
        ("train.warmup_epochs", 0, "not recorded: none"),
        ("train.freeze_backbone_epochs", 0, "not recorded: none"),
        ("train.schedule.name", "step", "record 004 §6.5: step schedule"),
        ("train.schedule.step_epoch", 80,
         "not recorded: BottleneckedResNet's (same lr); the run stopped at 68, before any drop"),
        ("train.schedule.factor", 0.5, "not recorded: the other step runs' factor"),
        ("train.epochs", 160, "record 004 §6.5: 160 planned, stopped at 68"),
        ("train.init_weights", None, "record 004 §6.5: from ImageNet, not another run"),
    ],
}

#: what every spec's table must pin: the fields the published protocols differ in
PROTOCOL_FIELDS = {
    "run.seed", "data.split.fractions", "preprocess.annulus", "train.loss.weighting", "model.pretrained",
    "train.micro_batch", "train.effective_batch", "train.optimizer.lr", "train.optimizer.weight_decay",
    "train.schedule.name", "train.warmup_epochs", "train.freeze_backbone_epochs", "train.epochs",
    "model.head_dropout", "train.early_stopping", "train.checkpoint_every", "train.init_weights",
}

ROWS = [(name, path, value, source) for name, rows in PUBLISHED.items() for path, value, source in rows]


def spec_of(name: str):
    return load_spec(SPEC_DIR / name)[0].spec


def value_at(spec: BaseModel, path: str) -> object:
    """The validated value at a dotted spec path (defaults included); ABSENT when the component
    at the last step has no such option."""
    node: object = spec
    parts = path.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, BaseModel):
            if part not in type(node).model_fields:
                if i == len(parts) - 1:
                    return ABSENT
                raise KeyError(f"{path}: {type(node).__name__} has no field {part!r}")
            node = getattr(node, part)
        else:
            node = node[part]
    return node


def plain(value: object) -> object:
    """JSON-like form for comparison: models as dicts, tuples as lists."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def test_every_published_run_has_a_spec():
    assert set(SPECS) == set(PUBLISHED)


@pytest.mark.parametrize("name", SPECS)
def test_table_pins_every_protocol_field(name):
    paths = [path for path, _, _ in PUBLISHED[name]]
    assert len(paths) == len(set(paths)), "a field is listed twice"
    assert PROTOCOL_FIELDS <= set(paths), f"not in the table: {sorted(PROTOCOL_FIELDS - set(paths))}"
    assert all(source.strip() for _, _, source in PUBLISHED[name])


@pytest.mark.parametrize(("name", "path", "published", "source"), ROWS,
                         ids=[f"{n}:{p}" for n, p, _, _ in ROWS])
def test_spec_carries_the_published_value(name, path, published, source):
    have = value_at(spec_of(name), path)
    if isinstance(published, float):
        assert isinstance(have, (int, float)) and math.isclose(have, published, rel_tol=1e-12), (
            f"{name}: {path} = {have!r}, published {published!r} ({source})")
    else:
        assert plain(have) == plain(published), f"{name}: {path} = {have!r}, published {published!r} ({source})"


def test_finetune_starts_from_the_step_runs_best_on_the_same_split():
    step, ft = spec_of("efficientnet_v2_s_step.toml"), spec_of("efficientnet_v2_s_finetune.toml")
    assert ft.train.init_weights == f"{step.run.out_dir}/train/best.pt"
    # the same galaxies in val (no v2 training galaxy leaks into v4's validation) and the same
    # preprocessing the checkpoint's network learnt
    assert plain(ft.data) == plain(step.data) and plain(ft.preprocess) == plain(step.preprocess)
    assert plain(ft.model) == plain(step.model.model_copy(update={"pretrained": None}))


@pytest.mark.parametrize("name", SPECS)
def test_frozen_backbones_start_from_learnt_weights(name):
    t, model = spec_of(name).train, spec_of(name).model
    if t.freeze_backbone_epochs:
        assert getattr(model, "pretrained", None) == "imagenet" or t.init_weights


@pytest.mark.parametrize("name", SPECS)
def test_the_parity_split_has_no_test_split(name):
    """The spec's split on the sky: train and val only, about 70/30 of the HEALPix pixels."""
    from dhs_data.splits import assign_splits

    split = spec_of(name).data.split
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 20_000), np.degrees(np.arcsin(rng.uniform(-1, 1, 20_000)))
    names = assign_splits(ra, dec, nside=split.nside, seed=split.seed, fractions=split.fractions)
    assert set(names) == {"train", "val"}
    assert abs(np.mean(names == "val") - 0.3) < 0.02


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """The tiny survey without its test split: train and val only, like the parity manifest."""
    path = make_survey(tmp_path_factory.mktemp("survey"))
    table = read_manifest(path)
    write_manifest(table.filter(pc.not_equal(table.column("split"), "test")), path)
    return path


@pytest.fixture
def imagenet_cache(tmp_path_factory, monkeypatch):
    """A torch cache holding stand-ins for torchvision's ImageNet weights files of every
    architecture a spec asks "imagenet" of (tests cannot download them): randomly initialised
    torchvision networks saved under the real file names, read through the same route."""
    import torchvision

    home = tmp_path_factory.getbasetemp() / "torch_home"
    enums = {"efficientnet_v2_s": "EfficientNet_V2_S_Weights", "resnet18": "ResNet18_Weights"}
    archs = {spec_of(n).model.name for n in SPECS if getattr(spec_of(n).model, "pretrained", None) == "imagenet"}
    assert archs <= set(enums), f"no stand-in weights for {sorted(archs - set(enums))}"
    paths = {}
    for arch in sorted(archs):
        url = getattr(torchvision.models, enums[arch]).IMAGENET1K_V1.url
        path = home / "hub" / "checkpoints" / Path(urlparse(url).path).name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(getattr(torchvision.models, arch)().state_dict(), path)
        paths[arch] = path
    monkeypatch.setenv("TORCH_HOME", str(home))
    return paths


def tiny(survey: Path, out: Path) -> list[str]:
    return [
        f"run.out_dir={out}", f"data.path={survey}", "data.stamp=32", "data.split.scheme=manifest",
        "preprocess.annulus=outer_20pct", "train.epochs=1", "train.micro_batch=4", "train.effective_batch=8",
        "evaluate.0.n_bootstrap=50",
    ]


def scored_splits(run_dir: Path) -> set[str]:
    return set(pq.read_table(run_dir / "train" / "scores.parquet").column("split").to_pylist())


@pytest.mark.parametrize("name", [s for s in SPECS if s not in ("efficientnet_v2_s_step.toml",
                                                               "efficientnet_v2_s_finetune.toml")])
def test_spec_runs_one_epoch(name, survey, tmp_path, imagenet_cache):
    res = run(SPEC_DIR / name, tiny(survey, tmp_path / "run"))
    assert res.stages["train"] == "ran" and res.stages["evaluate"] == "ran"
    # no test split: the train stage scores val only and the evaluation reports val only
    assert scored_splits(tmp_path / "run") == {"val"}
    assert "evaluate.val_auc" in res.metrics and not any(k.startswith("evaluate.test_") for k in res.metrics)


def test_step_then_finetune_from_its_best(survey, tmp_path, imagenet_cache):
    run(SPEC_DIR / "efficientnet_v2_s_step.toml", tiny(survey, tmp_path / "step"))
    best = tmp_path / "step" / "train" / "best.pt"
    logs: list[str] = []
    run(SPEC_DIR / "efficientnet_v2_s_finetune.toml",
        [*tiny(survey, tmp_path / "ft"), f"train.init_weights={best}"], log=logs.append)
    assert any("initialised weights from" in m for m in logs)
    ft = torch.load(tmp_path / "ft" / "train" / "last.pt", weights_only=True)
    assert ft["spec"]["train"]["init_weights"] == str(best)
    assert scored_splits(tmp_path / "ft") == {"val"}
