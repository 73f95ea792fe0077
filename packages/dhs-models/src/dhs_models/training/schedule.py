"""Learning rate per epoch: linear warm-up from lr/100, then step, cosine or constant.

A pure function of the epoch, so a resumed run gets exactly the learning rate an unbroken run
had; the scheduler's checkpoint state is just the epoch.
"""

from __future__ import annotations

import math

from dhs_models.training.config import CosineSchedule, StepSchedule, TrainConfig

WARMUP_START = 0.01  # warm-up starts at lr/100


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate during 0-based ``epoch``."""
    base = config.optimizer.lr
    sched = config.schedule
    if isinstance(sched, StepSchedule):
        lr = base * sched.factor ** (epoch // sched.step_epoch)
    elif isinstance(sched, CosineSchedule):
        t = min(epoch, sched.t_max)
        lr = sched.eta_min + (base - sched.eta_min) * 0.5 * (1 + math.cos(math.pi * t / sched.t_max))
    else:
        lr = base
    if epoch < config.warmup_epochs:
        lr *= WARMUP_START + (1 - WARMUP_START) * epoch / config.warmup_epochs
    return lr


def phase_at(config: TrainConfig, epoch: int) -> str:
    """``frozen`` (head only), ``warmup`` or ``full``, for metrics.jsonl."""
    if epoch < config.freeze_backbone_epochs:
        return "frozen"
    if epoch < config.warmup_epochs:
        return "warmup"
    return "full"


class EpochSchedule:
    """Sets the optimiser's learning rate at the start of each epoch."""

    def __init__(self, config: TrainConfig, optimizer) -> None:
        self.config = config
        self.optimizer = optimizer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> float:
        self.epoch = epoch
        lr = lr_at(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
