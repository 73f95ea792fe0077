"""DistributedDataParallel on CPU: two gloo processes train together, only rank 0 writes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out_dir: str, result_dir: str) -> None:
    os.environ["DHS_LOAD_PLUGINS"] = "builtin"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from helpers import ToyLenses

        from dhs_core import plugins
        from dhs_models import build_model
        from dhs_models.training.config import TrainConfig
        from dhs_models.training.trainer import Trainer

        torch.manual_seed(0)
        arch = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}
        model = build_model("bottlenecked_resnet", base_ch=4, blocks=[1, 1, 1, 1])
        cfg = TrainConfig(epochs=1, micro_batch=4, effective_batch=16, augment=False, device="cpu")
        trainer = Trainer(model, cfg, plugins.build("loss", "bce"), out_dir,
                          ToyLenses(32, seed=1), ToyLenses(16, seed=2), seed=5, architecture=arch,
                          log=lambda m: None)
        assert trainer.accum == 2  # 16 = 4 per micro-batch x 2 processes x 2 accumulated
        trainer.fit()
        torch.save({k: v.detach().clone() for k, v in trainer.model.module.state_dict().items()},
                   os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_process_gloo_training(tmp_path):
    out = tmp_path / "train"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # gradients are all-reduced, so weights agree; BatchNorm running statistics stay per process
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)
    assert (out / "last.pt").is_file() and (out / "metrics.jsonl").is_file()
    # one metrics line per epoch: only rank 0 writes
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


# ---- `dhs run` under torchrun ------------------------------------------------------------------

def test_train_shards_are_disjoint_and_cover_the_split():
    from dhs_models.training.trainer import train_sampler

    for n, world in ((24, 2), (25, 2), (26, 3)):
        data = list(range(n))
        orders = []
        for epoch in (0, 1):
            shards = [list(train_sampler(data, epoch, seed=7, rank=r, world=world)) for r in range(world)]
            seen = [i for shard in shards for i in shard]
            assert len(seen) == len(set(seen))  # no sample twice in an epoch, on any two ranks
            assert len(set(seen)) == n - n % world  # the rest (< world) sit this epoch out
            assert len({len(s) for s in shards}) == 1  # equal shards: no rank waits at an all-reduce
            orders.append(seen)
        assert orders[0] != orders[1]  # a new permutation every epoch
    # a single process visits the whole split
    assert sorted(train_sampler(list(range(25)), 0, seed=7)) == list(range(25))


def _torchrun(tmp_path, spec_file, *args: str):
    import subprocess
    import sys

    env = {**os.environ, "DHS_LOAD_PLUGINS": "builtin", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "dhs_cli", "run", str(spec_file), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_dhs_run_under_torchrun_writes_once_and_resumes(tmp_path):
    import json

    from synthdata import data_section, make_survey

    from dhs_core import layout
    from dhs_core.tomlw import dumps

    manifest = make_survey(tmp_path / "survey")
    out = tmp_path / "run"

    def write_spec(epochs: int):
        spec = {
            "run": {"name": "ddp", "seed": 3, "out_dir": str(out)},
            "data": data_section(manifest),
            "model": {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]},
            # 16 = 4 per micro-batch x 2 ranks x 2 accumulated
            "train": {"epochs": epochs, "micro_batch": 4, "effective_batch": 16, "device": "cpu",
                      "cpu_threads": 1, "optimizer": {"lr": 2e-3}, "loss": {"name": "bce"},
                      # early stopping broadcasts rank 0's counter every epoch: exercised here
                      "early_stopping": {"patience": 5}},
        }
        path = tmp_path / f"spec{epochs}.toml"
        path.write_text(dumps(spec))
        return path

    first = _torchrun(tmp_path, write_spec(1))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    train = out / "train"
    for name in ("best.pt", "last.pt", "metrics.jsonl", "scores.parquet", "summary.json"):
        assert (train / name).is_file(), name
    assert (out / "MODEL_CARD.md").is_file()  # the report stage ran, on rank 0
    info = json.loads((out / layout.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["stages"]["train"]["status"] == "ran"
    assert not (out / layout.LOCK).exists()
    # one writer: each line of the run's log once, and once on the console (rank 1 is silent)
    log = (out / layout.LOG).read_text()
    assert log.count("stage train: running") == 1 and log.count(" finished\n") == 1
    console = first.stdout + first.stderr
    assert console.count("stage train: running") == 1
    assert console.count("ran on rank 1") == 0  # rank 1 prints no stage table either
    assert len((train / "metrics.jsonl").read_text().splitlines()) == 1

    # extend to two epochs: both ranks resume from last.pt, rank 0 appends the second epoch
    second = _torchrun(tmp_path, write_spec(2))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = (out / layout.LOG).read_text()
    assert log.count("resuming from") == 1
    epochs = [json.loads(x)["epoch"] for x in (train / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert json.loads((out / layout.RUN_INFO).read_text())["status"] == "finished"
    assert torch.load(train / "last.pt", weights_only=True)["epoch"] == 1


def _resume_worker(rank: int, world: int, init_file: str, out_dir: str, result_dir: str, rank0_fails: bool) -> None:
    import json
    from datetime import timedelta

    from dhs_core.errors import UserError
    from dhs_models.training import trainer as trainer_module

    if rank0_fails and rank == 0:  # last.pt unreadable from rank 0 alone (e.g. a stale network-file-system view)
        def unreadable(path, what):
            import time

            time.sleep(3)  # a slow read: the other rank reaches the file before rank 0 moves it aside
            raise UserError(f"{what} {path} is damaged")
        trainer_module.read_checkpoint = unreadable

    os.environ["DHS_LOAD_PLUGINS"] = "builtin"
    torch.set_num_threads(1)
    # a short timeout: ranks that disagree on where to start fail here instead of hanging
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        trainer = _toy_trainer(out_dir, epochs=2)
        trainer.fit()
        with open(os.path.join(result_dir, f"start{rank}.json"), "w") as fh:
            json.dump({"start_epoch": trainer.start_epoch}, fh)
    finally:
        dist.destroy_process_group()


def _toy_trainer(out_dir, epochs: int):
    from helpers import ToyLenses

    from dhs_core import plugins
    from dhs_models import build_model
    from dhs_models.training.config import TrainConfig
    from dhs_models.training.trainer import Trainer

    torch.manual_seed(0)
    arch = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}
    model = build_model("bottlenecked_resnet", base_ch=4, blocks=[1, 1, 1, 1])
    cfg = TrainConfig(epochs=epochs, micro_batch=4, effective_batch=8, augment=False, device="cpu")
    return Trainer(model, cfg, plugins.build("loss", "bce"), out_dir, ToyLenses(16, seed=1), ToyLenses(8, seed=2),
                   seed=5, architecture=arch, log=lambda m: None)


@pytest.mark.parametrize("damaged,rank0_fails", [(False, False), (True, False), (False, True)],
                         ids=["resume", "damaged_last", "unreadable_on_rank0_only"])
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ranks_agree_where_to_start(tmp_path, damaged, rank0_fails):
    """Rank 0 decides whether to resume and every rank follows: with a good last.pt all ranks
    start at epoch 1; with a damaged one rank 0 moves it aside and all ranks start from scratch
    (a rank reading the file rank 0 was moving aside would otherwise start elsewhere and hang)."""
    import json

    out = tmp_path / "train"
    _toy_trainer(out, epochs=1).fit()  # one process, one epoch: last.pt after epoch 1
    last = out / "last.pt"
    if damaged:
        last.write_bytes(last.read_bytes()[:200])
    mp.spawn(_resume_worker, args=(2, str(tmp_path / "init"), str(out), str(tmp_path), rank0_fails), nprocs=2,
             join=True)
    starts = [json.loads((tmp_path / f"start{r}.json").read_text())["start_epoch"] for r in (0, 1)]
    from_scratch = damaged or rank0_fails
    assert starts == ([0, 0] if from_scratch else [1, 1])
    assert bool(list(out.glob("last.pt.damaged-*"))) == from_scratch
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
