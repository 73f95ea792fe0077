"""Trainer overhead vs a bare PyTorch loop, and CPU training throughput of the small finders.

    python benchmarks/bench_trainer.py [--quick] [--threads N]

1. The same model, data, micro-batch and optimiser are trained for one epoch by
   ``dhs_models.training.Trainer.train_epoch`` and by a bare loop (DataLoader -> forward ->
   BCE -> backward -> AdamW step), alternately, several times; the best epoch of each is
   compared. Budget (DESIGN §7): trainer overhead <= 5 %, i.e. ratio >= 0.95.
2. Training samples/s (forward + backward + step) of bottlenecked_resnet and resnet18 at 64 and
   101 px stamps on this CPU.

The last line is ``trainer: ratio <r> (dhs Trainer vs bare PyTorch loop samples/s)``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch.utils.data import DataLoader, Dataset

os.environ.setdefault("DHS_LOAD_PLUGINS", "builtin")


class InMemoryCutouts(Dataset):
    """Contract-3 dicts over pre-generated random stamps (no I/O: this measures the trainer)."""

    def __init__(self, n: int, px: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, px, px, generator=g)
        self.labels = (torch.arange(n) % 2).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "weight": torch.tensor(1.0), "index": i,
                "meta": torch.zeros(0), "galaxy_id": str(i)}


def bare_epoch(model, data, batch: int, optimizer) -> float:
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    model.train()
    t0, n = time.perf_counter(), 0
    for b in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(b["image"]).reshape(-1), b["label"])
        loss.backward()
        optimizer.step()
        float(loss.detach())  # a real loop logs the loss; the trainer checks it is finite
        n += len(b["label"])
    return n / (time.perf_counter() - t0)


def trainer_epoch(trainer, epoch: int) -> float:
    t0 = time.perf_counter()
    trainer.train_epoch(epoch)
    n = (len(trainer.train_data) // trainer.config.micro_batch) * trainer.config.micro_batch
    return n / (time.perf_counter() - t0)


def make_trainer(model, data, batch: int, out_dir: str):
    from dhs_core import plugins
    from dhs_models.training.config import TrainConfig
    from dhs_models.training.trainer import Trainer

    loss = plugins.get("loss", "bce")
    cfg = TrainConfig(epochs=1000, micro_batch=batch, augment=False, device="cpu")
    return Trainer(model, cfg, loss.impl(loss.Config()), out_dir, data, data, seed=0,
                   architecture={"name": "bench"}, log=lambda m: None)


def overhead(args) -> float:
    from dhs_models import build_model

    px, batch = 64, 32
    n = batch * (4 if args.quick else 12)
    data = InMemoryCutouts(n, px)
    torch.manual_seed(0)
    model = build_model("bottlenecked_resnet")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(model, data, batch, tmp)
        bare_opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        bare_epoch(model, data, batch, bare_opt)  # warm-up (allocator, kernels)
        trainer_epoch(trainer, 0)
        bare, ours = [], []
        for rep in range(2 if args.quick else 4):
            # alternate which goes first, so drifting load on a shared machine hits both equally
            if rep % 2:
                ours.append(trainer_epoch(trainer, rep + 1))
                bare.append(bare_epoch(model, data, batch, bare_opt))
            else:
                bare.append(bare_epoch(model, data, batch, bare_opt))
                ours.append(trainer_epoch(trainer, rep + 1))
    b, o = max(bare), max(ours)
    print(f"bottlenecked_resnet {px}px batch {batch}: bare loop {b:.1f} samples/s, Trainer {o:.1f} samples/s "
          f"(best of {len(bare)} epochs of {n} samples each)")
    return o / b


def throughput(args) -> None:
    from dhs_models import build_model

    batch = 32
    steps = 1 if args.quick else 5
    for name, options in (("bottlenecked_resnet", {}), ("resnet18", {})):
        for px in (64, 101):
            torch.manual_seed(0)
            model = build_model(name, **options)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x, y = torch.randn(batch, 3, px, px), (torch.arange(batch) % 2).float()
            loss_fn = torch.nn.BCEWithLogitsLoss()

            def step(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x).reshape(-1), y).backward()
                opt.step()

            step()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            rate = steps * batch / (time.perf_counter() - t0)
            print(f"{name} {px}px: {rate:.1f} training samples/s (batch {batch}, {torch.get_num_threads()} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches (under a minute)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    throughput(args)
    ratio = overhead(args)
    print(f"trainer: ratio {ratio:.3f} (dhs Trainer vs bare PyTorch loop samples/s)")


if __name__ == "__main__":
    main()
