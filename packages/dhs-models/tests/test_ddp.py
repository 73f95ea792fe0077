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
