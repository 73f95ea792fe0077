"""Survey-scale execution gives the same bytes on a Dask cluster as on the local executor: the
selection-function grid (cells and injections) and ``dhs score`` of a trained run."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

import dhs_core

pytest.importorskip("distributed")


def spec(out, executor):
    return {"run": {"name": "scale", "seed": 6, "out_dir": str(out)},
            "executor": executor,
            "data": {"name": "synthetic", "n_hosts": 150, "positive_fraction": 0.25},
            "preprocess": {"name": "raw_robust"},
            "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
            "train": {"epochs": 1, "micro_batch": 16, "effective_batch": 16, "cpu_threads": 1},
            "selection_function": {"injector": {"name": "model1", "fast_kernel": False, "supersample": 3},
                                   "theta_e": {"start": 1.0, "stop": 2.0, "step": 0.5},
                                   "psfsize_r_edges": [0.5, 1.3, 3.0], "source_mag_edges": [21.0, 23.0],
                                   "per_cell": 6, "batch_size": 6, "qa": "off", "plots": False}}


def test_selection_grid_and_scoring_on_dask_equal_local(tmp_path):
    from dhs_cli.main import main

    local = dhs_core.run(spec(tmp_path / "local", {"name": "local"}))
    # the same trained run, its selection function recomputed on a 2-worker Dask cluster
    shutil.copytree(tmp_path / "local", tmp_path / "dask", ignore=shutil.ignore_patterns("selection_function"))
    dask = dhs_core.run(spec(tmp_path / "dask", {"name": "dask", "workers": 2, "threads_per_worker": 1}))
    assert local.stages["selection_function"] == "ran" and dask.stages["selection_function"] == "ran"
    assert dask.stages["train"] == "skipped"  # the model is the local run's, byte for byte
    for name in ("cells.parquet", "injections.parquet"):
        a = pq.read_table(tmp_path / "local" / "selection_function" / name)
        b = pq.read_table(tmp_path / "dask" / "selection_function" / name)
        assert a.equals(b), name
    # dhs score of the run through both executors: identical scores, shard by shard
    for executor in ("local", "dask"):
        assert main(["score", "--run", str(tmp_path / "local"), "--out", str(tmp_path / f"score_{executor}"),
                     "--executor", executor, "--shard-size", "40"]) == 0
    a = pq.read_table(tmp_path / "score_local" / "scores.parquet")
    b = pq.read_table(tmp_path / "score_dask" / "scores.parquet")
    assert a.num_rows == 150 and a.equals(b)
