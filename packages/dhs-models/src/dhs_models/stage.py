"""The ``train`` stage: trains ``[model]`` with ``[train]`` on the data stage's splits, then scores
the val and test splits with ``best.pt`` into ``train/scores.parquet``.

The stage is registered as an instance, so this module imports no torch at module level: torch,
the trainer and the data loaders are imported inside :meth:`TrainStage.run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core import Section, Slot, Stage, StageContext, plugins
from dhs_core.errors import UserError
from dhs_core.io import atomic_path, write_json
from dhs_core.spec import resolved_dict
from dhs_data import layout as data_layout
from dhs_models.layout import ARTIFACTS, BEST, SCORES, SUMMARY
from dhs_models.training.config import TrainConfig


def build_loss(section: Any) -> Any:
    """The loss of a validated ``train.loss`` section."""
    return plugins.build("loss", section, where="train.loss")


def manifest_tiers(data_dir: Path) -> dict[str, str | None]:
    import pyarrow.parquet as pq

    table = pq.read_table(data_dir / data_layout.MANIFEST, columns=["galaxy_id", "tier"])
    return dict(zip(table.column("galaxy_id").to_pylist(), table.column("tier").to_pylist()))


def write_scores(path: Path, rows: list[tuple[str, str, float]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "galaxy_id": pa.array([r[0] for r in rows], pa.string()),
        "split": pa.array([r[1] for r in rows], pa.string()),
        "score": pa.array([r[2] for r in rows], pa.float64()),
    })
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


#: how long a rank waits for the others in the rendezvous and at barriers. Ranks > 0 reach the
#: train stage at once while rank 0 first builds the data (hours at survey scale); torchrun stops
#: every rank when one fails, so a long wait never hides a crash.
_DIST_TIMEOUT_S = 24 * 3600


def _init_distributed(device: str = "auto") -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    import atexit
    from datetime import timedelta

    import torch.distributed as dist

    from dhs_core import distributed

    if distributed.is_distributed() and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(_backend(device), timeout=timedelta(seconds=_DIST_TIMEOUT_S))
        # leave the group at exit (NCCL warns otherwise), unless the caller already did
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def _backend(device: str) -> str:
    """NCCL with one GPU per process on this node when training on CUDA, gloo on CPU."""
    import torch

    from dhs_core import distributed

    if device == "cpu" or not torch.cuda.is_available():
        return "gloo"
    # NCCL collectives run on the current device: pin it before the first one
    torch.cuda.set_device(distributed.local_rank() % torch.cuda.device_count())
    return "nccl"


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class TrainStage(Stage):
    """Train a lens finder; checkpoints, per-epoch metrics and val/test scores."""

    name = "train"
    sections = {
        "model": Section(Slot("architecture"), description="the network (a registered architecture)"),
        "train": Section(TrainConfig, description="the training protocol"),
    }
    trigger = "train"
    needs = (data_layout.ARTIFACTS["manifest"],)
    produces = tuple(ARTIFACTS[k] for k in ("best", "last", "metrics", "scores", "summary"))
    inputs = ("data", "preprocess")
    after = ("data",)
    artifacts = ARTIFACTS
    # under torchrun every rank trains (DistributedDataParallel); rank 0 alone writes
    distributed = True

    def check(self, spec: Any, run_dir: Path, source: str) -> None:
        """A frozen backbone must hold learnt weights: freezing a random one for the first epochs
        trains the head on random features (a mistake that otherwise passes silently)."""
        from dhs_core.errors import SpecError

        cfg = spec.train
        if cfg.freeze_backbone_epochs <= 0 or cfg.allow_random_freeze or cfg.init_weights:
            return
        pretrained = getattr(spec.model, "pretrained", None)
        if pretrained in (None, False, ""):
            raise SpecError(
                f"{source}: train.freeze_backbone_epochs = {cfg.freeze_backbone_epochs} freezes a randomly "
                f"initialised backbone (model {spec.model.name!r} has no pretrained weights: model.pretrained is "
                "not set and train.init_weights is empty), so the head would train on random features. Set "
                "model.pretrained = \"imagenet\" (or a weights file) or train.init_weights, or set "
                "train.allow_random_freeze = true to freeze the random backbone on purpose")

    def join(self, ctx: StageContext, runs: bool) -> bool:
        """Join the process group (ranks > 0 wait here until rank 0 has built the data) and
        broadcast rank 0's decision: every rank trains, or none does."""
        import torch.distributed as dist

        _init_distributed(ctx.spec.train.device)
        decision = [runs]
        dist.broadcast_object_list(decision, src=0)
        return bool(decision[0])

    def card_section(self, run_dir: Path) -> str:
        from dhs_models.card import section

        return section(run_dir)

    def run(self, ctx: StageContext) -> dict[str, float]:
        import numpy as np
        import torch

        from dhs_data.datasets import CutoutDataset
        from dhs_models import inference
        from dhs_models.training.trainer import Trainer

        spec, cfg = ctx.spec, ctx.spec.train
        _init_distributed(cfg.device)
        data_dir = ctx.run_dir / data_layout.DATA_DIR
        preprocess = getattr(spec, "preprocess", None)
        metadata = getattr(spec.model, "metadata", None)
        columns = tuple(metadata.columns) if metadata is not None else ()

        def dataset(split: str, augment: bool) -> CutoutDataset:
            return CutoutDataset(data_dir, split=split, preprocess=preprocess, augment=augment,
                                 seed=ctx.seed_for("augment"), metadata_columns=columns)

        architecture = spec.model.model_dump(mode="json")
        preprocess_dict = preprocess.model_dump(mode="json") if preprocess is not None else None
        loss_fn = build_loss(cfg.loss)
        tier_of = manifest_tiers(data_dir)
        # the initial weights are a function of run.seed, like everything else in a run
        torch.manual_seed(ctx.seed_for("init"))
        trainer = Trainer(
            inference.build_network(spec.model), cfg, loss_fn, ctx.stage_dir,
            dataset("train", cfg.augment), dataset("val", False),
            seed=ctx.seed, architecture=architecture, preprocess=preprocess_dict,
            spec=resolved_dict(spec), tier_of=tier_of, progress=ctx.progress, log=ctx.log,
            on_epoch_end=ctx.epoch_end,
        )
        last = trainer.fit(resume=not ctx.fresh)  # --force: from scratch
        if not trainer.is_main:
            _barrier()  # wait for rank 0 to write scores.parquet, so every rank sees the outputs
            return {}
        finder = inference.load_finder(ctx.stage_dir / BEST, device=trainer.device, what="best checkpoint")
        best = finder.info
        rows: list[tuple[str, str, float]] = []
        for split in ("val", "test"):
            try:
                ds = dataset(split, False)
            except UserError:
                ctx.log(f"split {split!r} has no cutouts; not scored")
                continue
            ids, probs = inference.score_dataset(finder.model, ds, batch_size=cfg.micro_batch, device=trainer.device)
            rows += [(g, split, float(p)) for g, p in zip(ids, probs)]
        write_scores(ctx.stage_dir / SCORES, rows)
        write_json(ctx.stage_dir / SUMMARY, {**trainer.summary(), "best_epoch": int(best["epoch"]) + 1})
        _barrier()
        out = {"best_epoch": float(best["epoch"] + 1), f"best_{cfg.monitor}": float(best["best_metric"])}
        out.update({k: float(v) for k, v in (best.get("metrics") or {}).items()
                    if k.startswith("val_") and isinstance(v, (int, float)) and np.isfinite(v)})
        if last:
            out["epochs_trained"] = float(last["epoch"])
        return out
