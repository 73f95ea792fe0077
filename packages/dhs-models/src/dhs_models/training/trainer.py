"""The training loop: AdamW, gradient accumulation, warm-up, backbone freezing, mixed precision,
validation every epoch, atomic checkpoints and exact resume.

Determinism: the shuffling order of epoch e is drawn from a generator seeded with
``derive_seed(seed, "shuffle", e)`` and the global torch RNG (dropout, stochastic depth) is
reseeded with ``derive_seed(seed, "epoch", e)`` at the start of every epoch. An epoch therefore
depends only on the weights and optimiser state it starts from, which is why a run resumed from
``last.pt`` ends bit-identical (on CPU) to an unbroken one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from dhs_core.errors import StageError, UserError
from dhs_core.io import write_text
from dhs_core.seeds import derive_seed
from dhs_core.stages import Progress

# the batched fast path of dhs-data stores (one read per shard per batch); also takes lists of
# per-sample dicts, so any map-style dataset works
from dhs_data.datasets import collate
from dhs_models.inference import read_checkpoint
from dhs_models.layout import BEST, EPOCH, LAST, METRICS
from dhs_models.training.batches import batch_tiers, forward, predict, unwrap, validation_metrics
from dhs_models.training.checkpoint import check_architecture, rng_state, save_checkpoint, set_rng_state
from dhs_models.training.config import MONITORABLE, TrainConfig
from dhs_models.training.schedule import EpochSchedule, phase_at


class TrainingDiverged(StageError):
    """The loss became NaN or infinite."""


def _resume_signature(spec: Mapping[str, Any]) -> dict[str, Any]:
    # Everything that shapes the trajectory; the epoch budget and worker count do not, so a run
    # can be extended (train.epochs 1 -> 2) and continue from last.pt.
    train = {k: v for k, v in (spec.get("train") or {}).items() if k not in ("epochs", "num_workers")}
    return {"seed": (spec.get("run") or {}).get("seed"), "model": spec.get("model"), "train": train,
            "data": spec.get("data"), "preprocess": spec.get("preprocess")}


def _better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def train_sampler(data: Dataset, epoch: int, seed: int, rank: int = 0, world: int = 1) -> Sampler:
    """The order in which this process visits the training set in ``epoch``.

    One process: a permutation of the whole set. Under DDP: rank ``rank``'s shard of one
    permutation shared by every rank (same seed and epoch everywhere), so the shards are
    disjoint; ``drop_last`` trims the permutation to a multiple of ``world`` rather than padding
    it with repeats, so no sample is seen twice in an epoch (fewer than ``world`` sit one out,
    a different few each epoch).
    """
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True,
                                     seed=derive_seed(seed, "shuffle"), drop_last=True)
        sampler.set_epoch(epoch)
        return sampler
    return RandomSampler(data, generator=torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch)))


class Trainer:
    """Trains ``model`` on ``train_data`` (dhs-data sample dicts: image, label, weight, meta, galaxy_id), validating on ``val_data``."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        loss_fn: Callable[..., torch.Tensor],
        out_dir: str | Path,
        train_data: Dataset,
        val_data: Dataset,
        *,
        seed: int,
        architecture: Mapping[str, Any],
        preprocess: Mapping[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
        tier_of: Mapping[str, str | None] | None = None,
        progress: Progress | None = None,
        log: Callable[[str], None] = print,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.config, self.loss_fn, self.out_dir = config, loss_fn, Path(out_dir)
        self.train_data, self.val_data, self.seed = train_data, val_data, int(seed)
        self.architecture, self.preprocess = dict(architecture), (dict(preprocess) if preprocess else None)
        self.spec = dict(spec or {})
        self.tier_of, self.progress, self.log, self.on_epoch_end = tier_of, progress or Progress(), log, on_epoch_end
        dist = torch.distributed
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        per_step = config.micro_batch * self.world
        if (config.effective_batch or per_step) % per_step:
            raise UserError(f"train.effective_batch = {config.effective_batch} is not a multiple of micro_batch "
                            f"x processes = {config.micro_batch} x {self.world}")
        self.accum = max(1, (config.effective_batch or per_step) // per_step)
        want = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if want == "cuda" and not torch.cuda.is_available():
            raise UserError("train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
        # one GPU per process on each node: the local rank picks it (the global rank would run
        # past the node's devices on a second node)
        local = int(os.environ.get("LOCAL_RANK", self.rank))
        self.device = torch.device(want, local % max(1, torch.cuda.device_count())) if want == "cuda" \
            else torch.device("cpu")
        if config.cpu_threads is not None:
            torch.set_num_threads(config.cpu_threads)
        self.amp_dtype = self._amp_dtype()
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        opt = config.optimizer
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr, betas=opt.betas,
                                           weight_decay=opt.weight_decay)
        self.schedule = EpochSchedule(config, self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best_metric, self.stop_best, self.bad_epochs = 0, None, None, 0
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # frozen backbone epochs leave backbone parameters without gradients
            self.model = DistributedDataParallel(self.model, device_ids=ids,
                                                 find_unused_parameters=config.freeze_backbone_epochs > 0)

    # ---- set-up ----------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        p = self.config.precision
        if self.device.type != "cuda" or p == "fp32":
            return None  # CPU training is always fp32: CPU autocast is slow and changes results
        if p == "bf16" or (p == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init_from(self, path: str | Path) -> None:
        """Fine-tune: model weights from another run's checkpoint; optimiser and schedule start fresh."""
        ckpt = read_checkpoint(path, what="train.init_weights")
        check_architecture(ckpt, path, self.architecture, what="train.init_weights")
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.log(f"initialised weights from {path} (epoch {ckpt.get('epoch', -1) + 1})")

    def try_resume(self) -> bool:
        """Continue from ``last.pt`` when it belongs to this configuration.

        A ``last.pt`` that cannot be read (truncated by a full disk, damaged) is moved aside as
        ``last.pt.damaged-<time>`` with a warning and training starts from scratch: the user
        never has to delete a file by hand, and the damaged one is kept for inspection.
        """
        path = self.out_dir / LAST
        if not path.is_file():
            return False
        try:
            ckpt = read_checkpoint(path, what="resume checkpoint")
        except UserError as exc:
            if not self.is_main:
                return False  # rank 0 moves it aside
            aside = path.with_name(f"{LAST}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(path, aside)
            self.log(f"warning: {exc}; moved it to {aside.name} and training from scratch")
            self.clear_outputs()
            return False
        if _resume_signature(ckpt.get("spec") or {}) != _resume_signature(self.spec):
            self.log(f"{path} belongs to a different configuration; training from scratch")
            self.clear_outputs()
            return False
        check_architecture(ckpt, path, self.architecture, what="resume checkpoint")
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.best_metric = ckpt["best_metric"]
        es = ckpt.get("early_stopping") or {}
        self.stop_best, self.bad_epochs = es.get("best"), int(es.get("bad_epochs", 0))
        self.start_epoch = int(ckpt["epoch"]) + 1
        if self.is_main:
            self._truncate_metrics(self.start_epoch)
        self.log(f"resuming from {path} after epoch {self.start_epoch}")
        return True

    def _resume_together(self) -> bool:
        """:meth:`try_resume` under DDP: rank 0 decides, every rank follows.

        Rank 0 reads ``last.pt`` first (and moves a damaged one aside, or discards one of
        another configuration); only when it resumes do the other ranks read the same file, and
        each must arrive at rank 0's starting epoch. Without this a rank could resume from a
        file rank 0 was moving aside, or train from scratch while rank 0 resumed, and the ranks
        would then wait on each other's all-reduces for ever.
        """
        decision = [self.try_resume() if self.is_main else False, self.start_epoch]
        torch.distributed.broadcast_object_list(decision, src=0)
        resumed, start_epoch = bool(decision[0]), int(decision[1])
        if not self.is_main and resumed:
            if not self.try_resume() or self.start_epoch != start_epoch:
                raise UserError(f"rank {self.rank} could not resume from {self.out_dir / LAST} at epoch "
                                f"{start_epoch} as rank 0 did (it reached epoch {self.start_epoch}); is the "
                                "run directory on a file system every rank sees alike?")
        return resumed

    # ---- one epoch -------------------------------------------------------------------------
    def _train_loader(self, epoch: int) -> DataLoader:
        ds, mb = self.train_data, self.config.micro_batch
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        sampler = train_sampler(ds, epoch, self.seed, self.rank, self.world)
        # drop the ragged last micro-batch: a batch of one breaks BatchNorm statistics
        return DataLoader(ds, batch_size=mb, sampler=sampler, drop_last=len(ds) > mb * self.world,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                          collate_fn=collate)

    def _set_frozen(self, frozen: bool) -> None:
        net = unwrap(self.model)
        backbone = getattr(net, "backbone", None)
        if backbone is None:
            if frozen:
                raise UserError("train.freeze_backbone_epochs > 0 needs a model with a .backbone module")
            return
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            backbone.eval()  # a frozen pretrained backbone keeps its BatchNorm statistics too

    def train_epoch(self, epoch: int) -> float:
        frozen = epoch < self.config.freeze_backbone_epochs
        self.model.train()
        self._set_frozen(frozen)
        loader = self._train_loader(epoch)
        n, total, seen = len(loader), 0.0, 0
        self.optimizer.zero_grad(set_to_none=True)
        desc = f"epoch {epoch + 1}/{self.config.epochs}"
        with (self.progress.task(desc, total=n) if self.is_main else contextlib.nullcontext()) as task:
            for i, batch in enumerate(loader):
                group_size = min(self.accum, n - (i // self.accum) * self.accum)
                last_in_group = (i + 1) % self.accum == 0 or i + 1 == n
                sync = contextlib.nullcontext() if (last_in_group or not self.distributed) else self.model.no_sync()
                with sync:
                    with self.autocast():
                        logits = forward(self.model, batch, self.device, self.config.channels_last)
                    labels = batch["label"].to(self.device)
                    loss = self.loss_fn(logits.float(), labels, sample_weight=batch["weight"].to(self.device),
                                        tier=batch_tiers(batch, self.tier_of))
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(
                            f"training diverged: loss is {value} at epoch {epoch + 1}, batch {i} (0-based); "
                            f"the last good checkpoint {self.out_dir / LAST} is kept"
                            + ("" if (self.out_dir / LAST).exists() else " (none was written yet)")
                        )
                    self.scaler.scale(loss / group_size).backward()
                if last_in_group:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                total += value * len(labels)
                seen += len(labels)
                if task is not None:
                    task.advance(1)
        return total / max(seen, 1)

    # ---- the loop --------------------------------------------------------------------------
    def clear_outputs(self) -> None:
        """Remove what an earlier training in this directory wrote (checkpoints and metrics), so
        a run from scratch leaves exactly what an unbroken run in an empty directory would."""
        if not self.is_main:
            return
        for name in (LAST, BEST, METRICS):
            (self.out_dir / name).unlink(missing_ok=True)
        # epoch_NNN.pt of a longer earlier run would otherwise outlive it
        for old in self.out_dir.glob(EPOCH.split("{")[0] + "*" + EPOCH.rsplit("}", 1)[1]):
            old.unlink(missing_ok=True)

    def fit(self, *, resume: bool = True) -> dict[str, Any]:
        """Train to ``config.epochs`` (or early stop); returns the last epoch's metrics.

        ``resume=False`` (``dhs run --force``) trains from scratch, whatever ``last.pt`` holds.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            resumed = False
        elif self.distributed:
            resumed = self._resume_together()
        else:
            resumed = self.try_resume()
        if not resumed:
            # from scratch: nothing of an earlier attempt may remain — a run killed after an
            # epoch's metrics line but before its last.pt would otherwise repeat that line
            self.clear_outputs()
        if not resumed and self.config.init_weights:
            self.init_from(self.config.init_weights)
        mode = MONITORABLE[self.config.monitor]
        es = self.config.early_stopping
        metrics: dict[str, Any] = {}
        for epoch in range(self.start_epoch, self.config.epochs):
            if es is not None and self.bad_epochs >= es.patience:
                break
            t0 = time.perf_counter()
            # every generator a step may touch starts the epoch from run.seed: python's and
            # numpy's global ones too (saved in the checkpoint's RNG state, so it is the same
            # in every run of a spec)
            epoch_seed = derive_seed(self.seed, "epoch", epoch)
            torch.manual_seed(epoch_seed)
            random.seed(epoch_seed)
            np.random.seed(epoch_seed & 0xFFFFFFFF)
            lr = self.schedule.set_epoch(epoch)
            train_loss = self.train_epoch(epoch)
            pred = predict(self.model, self.val_data, batch_size=self.config.micro_batch, device=self.device,
                           channels_last=self.config.channels_last, autocast=self.autocast, tier_of=self.tier_of)
            metrics = {"epoch": epoch + 1, "phase": phase_at(self.config, epoch), "lr": lr,
                       "train_loss": train_loss, **validation_metrics(pred, self.loss_fn)}
            # the first epoch always writes best.pt, even when its metric is undefined (NaN)
            is_best = self.best_metric is None or _better(metrics[self.config.monitor], self.best_metric, mode)
            if is_best:
                self.best_metric = metrics[self.config.monitor]
            if es is not None:
                if _better(metrics[es.metric], self.stop_best, MONITORABLE[es.metric], es.min_delta):
                    self.stop_best, self.bad_epochs = metrics[es.metric], 0
                else:
                    self.bad_epochs += 1
                if self.distributed:
                    # every rank must stop after the same epoch (one that stops alone leaves the
                    # others waiting in an all-reduce): rank 0's validation decides for all
                    state = [self.stop_best, self.bad_epochs]
                    torch.distributed.broadcast_object_list(state, src=0)
                    self.stop_best, self.bad_epochs = state
            metrics["seconds"] = round(time.perf_counter() - t0, 3)
            metrics["best"] = is_best
            if self.is_main:
                self._append_metrics(metrics)
                self._checkpoint(epoch, metrics)
            if self.on_epoch_end is not None and self.is_main:
                self.on_epoch_end(epoch + 1, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            self.log(self._summary(metrics))
        done = len(self._metrics_lines())
        if es is not None and self.bad_epochs >= es.patience:
            self.stop_reason = (f"early stopping: {es.metric} did not improve by more than {es.min_delta:g} "
                                f"for {es.patience} epochs (after epoch {done} of {self.config.epochs})")
            self.log(self.stop_reason)
        else:
            self.stop_reason = f"completed the configured {self.config.epochs} epochs"
        return metrics

    def summary(self) -> dict[str, Any]:
        """What the trainer knows about the run that no metrics row says: why it stopped, the
        network's size and the numeric set-up. Written by the train stage as ``summary.json``."""
        model = unwrap(self.model)
        amp = self.amp_dtype
        return {
            "stop_reason": getattr(self, "stop_reason", "not recorded"),
            "epochs_configured": self.config.epochs,
            "epochs_done": len(self._metrics_lines()),
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            "n_trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "device": str(self.device),
            "amp": str(amp).replace("torch.", "") if amp is not None else "off (float32)",
            "monitor": self.config.monitor,
            "best_metric": self.best_metric,
        }

    @staticmethod
    def _summary(m: Mapping[str, Any]) -> str:
        return (f"epoch {m['epoch']} [{m['phase']}] lr {m['lr']:.3g} train_loss {m['train_loss']:.4f} "
                f"val_loss {m['val_loss']:.4f} val_auc {m['val_auc']:.4f} val_pauc {m['val_pauc']:.4f}")

    def _checkpoint(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        payload = {
            "model": unwrap(self.model).state_dict(),
            "architecture": self.architecture,
            "preprocess": self.preprocess,
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "early_stopping": {"best": self.stop_best, "bad_epochs": self.bad_epochs},
            "rng": rng_state(),
            "spec": self.spec,
            # wall-clock seconds stay in metrics.jsonl: a checkpoint holds only what the run's
            # inputs determine, so rerunning a spec rewrites it byte for byte (and the
            # selection-function cells keyed by its SHA-256 are reused)
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "seconds"},
        }
        # best.pt before last.pt: if killed in between, the resumed run redoes this epoch and
        # rewrites both, never leaving a last.pt that is newer than a best it should have replaced
        if metrics.get("best"):
            save_checkpoint(self.out_dir / BEST, payload)
        k = self.config.checkpoint_every
        if k and (epoch + 1) % k == 0:
            save_checkpoint(self.out_dir / EPOCH.format(epoch=epoch + 1), payload)
        save_checkpoint(self.out_dir / LAST, payload)

    def _metrics_lines(self) -> list[str]:
        path = self.out_dir / METRICS
        return path.read_text().splitlines() if path.is_file() else []

    def _append_metrics(self, metrics: Mapping[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        lines = [*self._metrics_lines(), json.dumps(clean, sort_keys=True)]
        write_text(self.out_dir / METRICS, "\n".join(lines) + "\n")

    def _truncate_metrics(self, start_epoch: int) -> None:
        keep = [ln for ln in self._metrics_lines() if ln.strip() and json.loads(ln)["epoch"] <= start_epoch]
        write_text(self.out_dir / METRICS, "\n".join(keep) + ("\n" if keep else ""))
