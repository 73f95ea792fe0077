"""A tiny stand-in for the data, train and selection-function stages, so that dhs-eval's stages run
end to end without the other packages. Each fixture stage writes the artifact its real counterpart
would (same paths and columns) from a seeded random generator, and contributes a short section to
MODEL_CARD.md, as any third-party stage would."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from dhs_core import Section, Stage, hookimpl, plugins
from dhs_core.cards import read_jsonl

PLUGIN_NAME = "dhs-eval-test-fixture"


class FixtureData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # number of cutouts in the fake manifest
    n: int = 1200
    # seed of the fake manifest
    seed: int = 0


class FixtureTrain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # epochs written to metrics.jsonl
    epochs: int = 3
    # cutouts whose score is NaN (failed to score)
    n_nan: int = 4
    # seed of the fake scores (two runs with different seeds: two finders on the same cutouts)
    score_seed: int = 1


class FixtureSelection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # injections per cell
    per_cell: int = 40


def make_manifest(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.25).astype(np.int8)
    tier = np.where(label == 1, rng.choice(["A", "B"], n), None)
    pool = np.where(label == 0, rng.choice(["N1", "N2"], n, p=[0.85, 0.15]), None)
    cat = np.where(label == 0, rng.choice(["edge_on_proxy", "ring_proxy", "none"], n), None)
    return pa.table({
        "galaxy_id": [f"G{i:05d}" for i in range(n)], "cutout_path": [f"c/{i}.npz" for i in range(n)],
        "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-20, 20, n), "type_bin": rng.choice(["SER", "DEV"], n),
        "nobs_z_bin": rng.choice(["1-2", "3+"], n), "split": rng.choice(["train", "val", "test"], n, p=[0.5, 0.25, 0.25]),
        "pool": pa.array(pool.tolist(), pa.string()), "confuser_category": pa.array(cat.tolist(), pa.string()),
        "psfsize_r": rng.uniform(1.0, 1.6, n), "psfdepth_r": rng.uniform(50, 400, n), "ebv": rng.uniform(0, 0.1, n),
        "healpix_128": rng.integers(0, 196608, n), "label": label, "tier": pa.array(tier.tolist(), pa.string()),
        "sample_weight": np.ones(n, np.float32),
    })


def make_scores(manifest: pa.Table, n_nan: int, seed: int = 1) -> pa.Table:
    held = manifest.filter(pa.compute.is_in(manifest.column("split"), pa.array(["val", "test"])))
    rng = np.random.default_rng(seed)
    label = held.column("label").to_numpy()
    logit = rng.normal(size=held.num_rows) * 1.5 + 3.0 * label - 2.0
    score = 1.0 / (1.0 + np.exp(-logit))
    score[:n_nan] = np.nan
    return pa.table({"galaxy_id": held.column("galaxy_id"), "split": held.column("split"), "score": score})


class FixtureDataStage(Stage):
    # stands in for dhs-data's stage: the same stage name and artifact keys, so the evaluate stage
    # finds the manifest with dhs_core.artifact("data", "manifest") as it does in a real run
    name = "data"
    artifacts = {"manifest": "data/manifest.parquet", "truth": "data/truth.parquet"}
    sections = {"fixture_data": Section(FixtureData)}
    trigger = "fixture_data"
    produces = ("data/manifest.parquet", "data/data_report.json")

    def run(self, ctx):
        cfg = ctx.spec.fixture_data
        manifest = make_manifest(cfg.n, cfg.seed)
        ctx.path("data").mkdir(parents=True, exist_ok=True)
        pq.write_table(manifest, ctx.path("data/manifest.parquet"))
        ctx.path("data/data_report.json").write_text(json.dumps({"n_rows": cfg.n, "n_excluded": 0}))

    def card_section(self, run_dir):
        n = pq.read_metadata(run_dir / "data/manifest.parquet").num_rows
        return f"## Data (fixture)\n\n- Cutouts in the manifest: {n:,}"


class FixtureTrainStage(Stage):
    name = "train"
    artifacts = {"scores": "train/scores.parquet", "metrics": "train/metrics.jsonl"}
    sections = {"fixture_train": Section(FixtureTrain)}
    trigger = "fixture_train"
    needs = ("data/manifest.parquet",)
    produces = ("train/scores.parquet", "train/metrics.jsonl")

    def run(self, ctx):
        cfg = ctx.spec.fixture_train
        manifest = pq.read_table(ctx.path("data/manifest.parquet"))
        out = ctx.path("train")
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(make_scores(manifest, cfg.n_nan, cfg.score_seed), out / "scores.parquet")
        rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_auc": 0.8 + 0.02 * e, "best": True}
                for e in range(1, cfg.epochs + 1)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for r in rows:  # as the real trainer does: the lifecycle hook after every epoch
            ctx.epoch_end(r["epoch"], {k: v for k, v in r.items() if k != "best"})

    def card_section(self, run_dir):
        rows = read_jsonl(run_dir / "train/metrics.jsonl")
        return f"## Training run (fixture)\n\n- Epochs: {len(rows)}"


class FixtureSelectionStage(Stage):
    name = "selection_function"
    artifacts = {"cells": "selection_function/cells.parquet"}
    sections = {"fixture_selection": Section(FixtureSelection)}
    trigger = "fixture_selection"
    produces = ("selection_function/cells.parquet",)

    def run(self, ctx):
        per_cell = ctx.spec.fixture_selection.per_cell
        theta_e, psf, depth = np.meshgrid([0.75, 1.25, 1.75], [1.1, 1.4], [24.0, 24.5], indexing="ij")
        rng = np.random.default_rng(3)
        p = np.clip(0.3 * theta_e - 0.2 * (psf - 1), 0, 1)
        n_ok = np.full(theta_e.shape, per_cell)
        out = ctx.path("selection_function")
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"theta_e": theta_e.ravel(), "psfsize_r": psf.ravel(), "depth_m5": depth.ravel(),
                                 "n_detected": rng.binomial(n_ok, p).ravel(), "n_ok": n_ok.ravel()}),
                       out / "cells.parquet")

    def card_section(self, run_dir):
        from dhs_eval import selection

        total = selection.summary(pq.read_table(run_dir / "selection_function/cells.parquet"))
        return f"## Selection function (fixture)\n\n- Detected: {total['n_detected']:,}/{total['n_ok']:,}"


class FixturePlugin:
    @hookimpl
    def register_stages(self, register):
        register("data", FixtureDataStage())
        register("train", FixtureTrainStage())
        register("selection_function", FixtureSelectionStage())


@contextmanager
def fixture_stages() -> Iterator[None]:
    """The fixture stages in place of the real data/train/selection-function stages: the packages
    that provide those are blocked (when installed) so the names do not clash."""
    saved = os.environ.get("DHS_DISABLE_PLUGINS")
    os.environ["DHS_DISABLE_PLUGINS"] = "dhs-data,dhs-models,dhs-inject"
    plugins.reset()
    plugins.register_plugin(FixturePlugin(), name=PLUGIN_NAME, distribution="dhs-eval-tests")
    try:
        yield
    finally:
        plugins.unregister_plugin(PLUGIN_NAME)
        if saved is None:
            os.environ.pop("DHS_DISABLE_PLUGINS", None)
        else:
            os.environ["DHS_DISABLE_PLUGINS"] = saved
        plugins.reset()
