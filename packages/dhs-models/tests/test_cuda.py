"""The CUDA paths: AMP training steps, channels_last, DDP over NCCL, ``dhs score --device cuda``.

Every test here is marked ``cuda`` and skipped where torch sees no GPU; on a GPU machine they
run with ``pytest -m cuda`` (benchmarks/gpu/run.sh). The CPU paths they mirror are tested in
test_trainer.py, test_ddp.py and test_score.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

MODEL = {"name": "bottlenecked_resnet", "base_ch": 4, "blocks": [1, 1, 1, 1]}


def _trainer(out_dir, **train):
    from helpers import ToyLenses

    from dhs_core import plugins
    from dhs_models import build_model
    from dhs_models.training.config import TrainConfig
    from dhs_models.training.trainer import Trainer

    torch.manual_seed(0)
    model = build_model(MODEL["name"], base_ch=4, blocks=[1, 1, 1, 1])
    cfg = TrainConfig(**{"epochs": 1, "micro_batch": 8, "effective_batch": 16, "augment": False, "device": "cuda",
                         **train})
    return Trainer(model, cfg, plugins.build("loss", "bce"), out_dir, ToyLenses(32, px=32, seed=1),
                   ToyLenses(16, px=32, seed=2), seed=5, architecture=MODEL, log=lambda m: None)


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_training_step_with_channels_last(tmp_path, precision, dtype):
    """One epoch under autocast: the weights stay float32 in channels_last, they move, the loss
    is finite, fp16 goes through the gradient scaler, and the checkpoint resumes on the CPU."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    trainer = _trainer(tmp_path / "train", precision=precision, channels_last=True)
    assert trainer.device.type == "cuda" and trainer.amp_dtype == dtype
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.dtype == torch.float32 for w in convs)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.ndim == 4)
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    line = json.loads((tmp_path / "train" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(line["train_loss"]) and np.isfinite(line["val_loss"]) and np.isfinite(line["val_auc"])
    ckpt = torch.load(tmp_path / "train" / "last.pt", map_location="cpu", weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())


def test_channels_last_inference_equals_cpu(tmp_path):
    """A finder loaded on CUDA holds channels_last weights and scores like the CPU in float32."""
    from helpers import ToyLenses

    from dhs_models.inference import load_finder, score_images

    trainer = _trainer(tmp_path / "train", precision="fp32")
    trainer.fit()
    images = ToyLenses(24, px=32, seed=9).images.numpy()
    cpu = load_finder(tmp_path / "train" / "best.pt", device="cpu")
    gpu = load_finder(tmp_path / "train" / "best.pt", device="cuda")
    convs = [m.weight for m in gpu.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.ndim == 4]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    a = score_images(cpu.model, images, preprocess=cpu.preprocess, device=cpu.device)
    b = score_images(gpu.model, images, preprocess=gpu.preprocess, device=gpu.device)
    # cuDNN picks its own convolution algorithms (and TF32 where torch.backends.cudnn.allow_tf32,
    # on by default): sums in another order, so equal within a float32 tolerance, not bit for bit
    np.testing.assert_allclose(b, a, atol=2e-3)


def _nccl_worker(rank: int, init_file: str, out_dir: str) -> None:
    os.environ.update(DHS_LOAD_PLUGINS="builtin", LOCAL_RANK="0")
    from dhs_models.stage import _backend

    backend = _backend("cuda")
    assert backend == "nccl"
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=0, world_size=1)
    try:
        x = torch.ones(4, device="cuda")
        dist.all_reduce(x)
        assert x.sum().item() == 4
        trainer = _trainer(out_dir, precision="bf16" if torch.cuda.is_bf16_supported() else "fp16",
                           channels_last=True)
        assert trainer.distributed and trainer.world == 1
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        trainer.fit()
    finally:
        dist.destroy_process_group()


def test_ddp_init_with_nccl_on_one_rank(tmp_path):
    """The NCCL backend the train stage picks on CUDA: a process group of one, an all-reduce,
    and a DistributedDataParallel epoch under AMP that writes its checkpoint."""
    if not dist.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    mp.spawn(_nccl_worker, args=(str(tmp_path / "init"), str(tmp_path / "train")), nprocs=1, join=True)
    assert (tmp_path / "train" / "last.pt").is_file()
    assert len((tmp_path / "train" / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained on the CPU (its scores are the float32 CPU reference)."""
    from synthdata import data_section, make_survey

    from dhs_core import run

    root = tmp_path_factory.mktemp("cuda_score")
    manifest = make_survey(root / "survey")
    run({"run": {"name": "c", "seed": 5, "out_dir": str(root / "run")}, "data": data_section(manifest),
         "model": MODEL, "train": {"epochs": 1, "micro_batch": 8, "effective_batch": 16, "device": "cpu",
                                   "optimizer": {"lr": 2e-3}, "loss": {"name": "bce"}}})
    return root / "run"


@pytest.mark.parametrize("precision,atol", [("fp32", 2e-3), ("bf16", 5e-2)])
def test_dhs_score_on_cuda_equals_cpu(trained, tmp_path, precision, atol):
    """``dhs score --device cuda`` gives the CPU's scores within the precision's tolerance, for
    the same cutouts in the same order, and says where it ran."""
    from dhs_cli.main import main

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    assert main(["score", "--run", str(trained), "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert main(["score", "--run", str(trained), "--out", str(tmp_path / "gpu"), "--device", "cuda",
                 "--precision", precision]) == 0
    cpu = pq.read_table(tmp_path / "cpu" / "scores.parquet").to_pydict()
    gpu = pq.read_table(tmp_path / "gpu" / "scores.parquet").to_pydict()
    assert gpu["galaxy_id"] == cpu["galaxy_id"] and gpu["status"] == cpu["status"]
    np.testing.assert_allclose(np.asarray(gpu["score"], float), np.asarray(cpu["score"], float), atol=atol)
    summary = json.loads((tmp_path / "gpu" / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["n_scored"] == len(cpu["score"])
