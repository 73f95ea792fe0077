"""examples/papers/gen1.toml and gen2.toml: the published Gen1 / Gen2 protocols validate, carry
the published choices, and run end to end for one tiny epoch on synthetic hosts (``--set``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dhs_core import run
from dhs_core.spec import load_spec

PAPERS = Path(__file__).resolve().parents[3] / "examples" / "papers"


def tiny(out: Path) -> list[str]:
    return [f"run.out_dir={out}", "data.hosts.n_hosts=150", "data.chunk_size=32",
            "data.injector.fast_kernel=false", "data.injector.supersample=1",
            "train.epochs=1", "train.micro_batch=16", "train.effective_batch=16"]


@pytest.mark.parametrize("name, grid, controls, arch", [
    ("gen1.toml", "grid_small", "paired", "resnet18"),
    ("gen2.toml", "grid_sota", "unpaired", "convnext_tiny"),
])
def test_gen_specs_carry_the_published_protocol(name, grid, controls, arch):
    spec = load_spec(PAPERS / name)[0].spec
    assert spec.data.name == "injected" and spec.data.grid == grid and spec.data.controls == controls
    assert spec.model.name == arch and spec.train.optimizer.lr == 3e-4
    assert spec.data.injector.psf == "gaussian" and tuple(spec.data.injector.prior.src_n) == (1.0, 1.0)
    if name == "gen1.toml":  # paired controls must be allowed explicitly; 64 px small-input ResNet-18
        assert spec.data.split.paired_controls and spec.model.small_input and spec.train.epochs == 10
    else:  # hash-disjoint controls; weight decay 1e-2, 512 per step, 12 epochs
        assert not spec.data.split.paired_controls and spec.train.optimizer.weight_decay == 1e-2
        assert spec.train.effective_batch == 512 and spec.train.epochs == 12


def test_gen1_runs_end_to_end_at_tiny_size(tmp_path):
    out = tmp_path / "gen1"
    res = run(PAPERS / "gen1.toml", [*tiny(out), "selection_function.per_cell=2",
                                      "selection_function.injector.fast_kernel=false",
                                      "selection_function.injector.supersample=1"])
    assert all(status == "ran" for status in res.stages.values()), res.stages
    summary = json.loads((out / "data" / "injected.json").read_text())
    assert summary["controls"] == "paired" and summary["n_injections"] > 0
    assert summary["n_controls"] >= summary["n_injections"]  # each injected host is also its own control
    assert (out / "selection_function" / "cells.parquet").is_file()


def test_gen2_runs_one_epoch_at_tiny_size(tmp_path):
    out = tmp_path / "gen2"
    res = run(PAPERS / "gen2.toml", tiny(out))
    assert res.stages["train"] == "ran" and "evaluate.test_auc" in res.metrics or res.stages["evaluate"] == "ran"
    summary = json.loads((out / "data" / "injected.json").read_text())
    assert summary["controls"] == "unpaired" and summary["n_configs"] == 1008
