"""``dhs run`` under torchrun, as dhs-core sees it: ranks from the environment, rank 0 runs the
pipeline, ranks > 0 join only ``distributed`` stages and write nothing of the runner's."""

from __future__ import annotations

import json

import pytest

import dhs_core
from dhs_core import distributed, layout
from dhs_core.testing import FixturePlugin, NumbersStage, SquareStage, registered


@pytest.fixture(autouse=True)
def fixture_plugin():
    NumbersStage.calls.clear()
    SquareStage.crash = False
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"):
        yield


def spec(tmp_path):
    return {
        "run": {"name": "pipe", "seed": 5, "out_dir": str(tmp_path / "run")},
        "numbers": {"name": "fx_count", "n": 3},
        "square": {"weighting": {"name": "fx_scaled", "factor": 2.0}},
    }


def as_rank(monkeypatch, rank: int, world: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


def test_rank_helpers_read_torchrun_environment(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert not distributed.is_distributed()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.local_rank() == 3  # single node: the local rank is the global one
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (distributed.rank(), distributed.local_rank(), distributed.world_size()) == (3, 1, 4)
    assert distributed.is_distributed() and not distributed.is_main()


def test_rank_above_zero_runs_no_plain_stage_and_writes_nothing(tmp_path, monkeypatch):
    as_rank(monkeypatch, 1)
    res = dhs_core.run(spec(tmp_path))
    assert res.stages == {} and NumbersStage.calls == []
    # no run directory, no lock, no log: rank 0 owns all of them
    assert not (tmp_path / "run").exists()


def test_distributed_stage_joins_on_every_rank_and_only_rank_zero_records(tmp_path, monkeypatch):
    joins: list[tuple[str, bool]] = []

    def join(self, ctx, runs):
        joins.append((ctx.stage_name, runs))
        return True  # what rank 0 broadcasts when it runs the stage

    monkeypatch.setattr(SquareStage, "distributed", True)
    monkeypatch.setattr(SquareStage, "join", join)
    as_rank(monkeypatch, 0)
    assert dhs_core.run(spec(tmp_path)).stages == {"numbers": "ran", "square": "ran"}
    assert joins == [("square", True)]  # only the distributed stage asks the other ranks to join
    run_dir = tmp_path / "run"
    runner_files = [run_dir / layout.LOG, run_dir / layout.RUN_INFO,
                    *sorted((run_dir / layout.STATE_DIR).glob("*.json"))]
    before = {p: p.read_bytes() for p in runner_files}
    assert not (run_dir / layout.LOCK).exists()

    joins.clear()
    NumbersStage.calls.clear()
    as_rank(monkeypatch, 1)
    res = dhs_core.run(spec(tmp_path))
    assert joins == [("square", False)]  # a follower has no say: it passes False and obeys
    assert NumbersStage.calls == ["square"] and res.stages == {"square": "ran on rank 1"}
    assert {p: p.read_bytes() for p in runner_files} == before
    assert sorted((run_dir / layout.STATE_DIR).glob("*.json")) == runner_files[2:]
    assert json.loads((run_dir / layout.RUN_INFO).read_text())["status"] == "finished"
