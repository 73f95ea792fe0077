"""The ``score`` stage: the run's best checkpoint over a whole data store (``[score]``).

The same work as ``dhs score --run`` (:mod:`dhs_models.scoring`), written into ``<run>/score/``
through the run's executor. Torch-free at import: validating a spec imports no torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dhs_core import ComponentConfig, Section, Stage, StageContext
from dhs_data import layout as data_layout
from dhs_models.layout import ARTIFACTS, SCORE_ARTIFACTS


class ScoreConfig(ComponentConfig):
    """Scoring a survey with the run's ``train/best.pt``."""

    # another data directory (or its manifest) to score; unset: the run's own data store
    data: str | None = None
    # cutouts per shard: one executor task and one resumable file each
    shard_size: int = Field(default=4096, ge=1)
    # cutouts read and scored together; bounds a worker's memory whatever the shard size
    batch_size: int = Field(default=64, ge=1)
    # candidates.parquet keeps this many cutouts, highest score first
    top_k: int = Field(default=100, ge=0)
    # above this many cutouts score/scores.parquet is a directory of parts of this many rows
    dataset_rows: int = Field(default=10_000_000, ge=1)
    # false-positive rates whose thresholds are set on the run's validation negatives
    fpr: list[float] = Field(default_factory=list)
    # auto: CUDA when present, else the CPU (where scores match train/scores.parquet bit for bit);
    # cuda or cuda:N for one GPU of several, as dhs score --device takes
    device: str = "auto"
    # fp32, or autocast to bf16 / fp16 on CUDA (the CPU always scores in float32)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"device {v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @field_validator("fpr")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not 0 < x < 1]
        if bad:
            raise ValueError(f"false-positive rates must lie in (0, 1), e.g. 1e-3; got {bad}")
        return v


class ScoreStage(Stage):
    """Score every cutout of a store; scores, candidates, summary with FPR thresholds."""

    name = "score"
    sections = {"score": Section(ScoreConfig, description="scoring a survey with the trained finder")}
    trigger = "score"
    needs = (ARTIFACTS["best"], ARTIFACTS["scores"], data_layout.ARTIFACTS["manifest"])
    produces = tuple(SCORE_ARTIFACTS.values())
    after = ("train",)
    artifacts = SCORE_ARTIFACTS

    def fingerprint(self, spec, run_dir: Path):
        # another data directory is an input the spec only names: rescore when its manifest changes
        data = spec.score.data
        if not data:
            return None
        path = Path(data)
        manifest = path if path.is_file() else path / data_layout.MANIFEST
        st = manifest.stat() if manifest.is_file() else None
        return None if st is None else [str(manifest.resolve()), st.st_size, st.st_mtime_ns]

    def run(self, ctx: StageContext) -> dict[str, float]:
        from dhs_models.scoring import run_scoring

        cfg: ScoreConfig = ctx.spec.score
        summary = run_scoring(
            ctx.path(ARTIFACTS["best"]), cfg.data or ctx.run_dir / data_layout.DATA_DIR, ctx.stage_dir,
            executor=ctx.executor, device=cfg.device, precision=cfg.precision, shard_size=cfg.shard_size,
            batch_size=cfg.batch_size, top_k=cfg.top_k, dataset_rows=cfg.dataset_rows, device_option="score.device", fprs=cfg.fpr, run_dir=ctx.run_dir,
            # the stage owns <run>/score: a retrained checkpoint's scores replace the old ones
            force=ctx.fresh, replace_stale=True, progress=ctx.progress, log=ctx.log,
        )
        out = {"n_scored": float(summary["n_scored"]), "n_failed": float(summary["n_failed"])}
        if summary["throughput_cutouts_per_s"]:
            out["cutouts_per_s"] = float(summary["throughput_cutouts_per_s"])
        return out
