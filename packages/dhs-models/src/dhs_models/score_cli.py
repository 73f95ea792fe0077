"""``dhs score``: a trained finder over a whole cutout store (see :mod:`dhs_models.scoring`).

Registered through dhs-models' ``register_commands`` hook, so dhs-cli stays generic. Typer and
rich are imported inside :func:`register` / the command (the CLI's dependencies, present whenever
commands are registered); the package arrows forbid importing dhs_cli itself, so the progress
bar adapts rich to dhs-core's progress protocol here, as ``dhs data`` commands use rich directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List


def register(app: Any) -> None:
    import typer

    @app.command("score")
    def score_command(
        run: Path | None = typer.Option(None, "--run", help="run directory: scores with train/best.pt, data "
                                           "defaults to its data store, thresholds from its validation negatives"),
        checkpoint: Path | None = typer.Option(None, "--checkpoint", help="checkpoint to score with (instead of --run)"),
        data: Path | None = typer.Option(None, "--data", help="data directory (or its manifest.parquet) to score"),
        out: Path | None = typer.Option(None, "--out", help="output directory (default: RUN/score)"),
        executor: str | None = typer.Option(None, "--executor", help="executor by name, e.g. local or dask"),
        device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16 / fp16 autocast on CUDA"),
        shard_size: int = typer.Option(4096, "--shard-size", min=1, help="cutouts per shard (one task, one file)"),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="cutouts scored together"),
        top_k: int = typer.Option(100, "--top-k", min=0, help="cutouts kept in candidates.parquet"),
        fpr: List[float] = typer.Option([], "--fpr", help="false-positive rate to set a threshold for (repeatable; "
                                        "needs --run)"),
        force: bool = typer.Option(False, "--force", help="replace what OUT holds, even another checkpoint's scores"),
        dataset_rows: int = typer.Option(10_000_000, "--dataset-rows", min=1,
                                         help="above this many cutouts scores.parquet is a directory of parts of "
                                              "this many rows"),
    ) -> None:
        """Score every cutout of a store by shard (resumable); scores, candidates and a summary."""
        from rich.console import Console

        from dhs_core import plugins
        from dhs_core.errors import UserError
        from dhs_data.layout import DATA_DIR
        from dhs_models.layout import BEST, SCORE_DIR, SCORE_SUMMARY, TRAIN_DIR
        from dhs_models.scoring import run_scoring

        if (run is None) == (checkpoint is None):
            raise UserError("give exactly one of --run RUN_DIR (scores with RUN_DIR/train/best.pt) and "
                            "--checkpoint FILE")
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise UserError(f"--device {device!r} is not one of auto, cpu, cuda")
        if run is not None:
            if not run.is_dir():
                raise UserError(f"--run {str(run)!r}: no such run directory")
            checkpoint = run / TRAIN_DIR / BEST
            data = data or run / DATA_DIR
            out = out or run / SCORE_DIR
        if data is None or out is None:
            raise UserError("--checkpoint needs --data DATA_DIR and --out DIR")
        pool = plugins.build("executor", {"name": executor}, where="--executor") if executor else None
        err = Console(stderr=True)
        try:
            if pool is not None:
                pool.log = lambda msg: err.print(f"dhs: {msg}", markup=False, highlight=False)
            with _BarProgress(err) as progress:
                summary = run_scoring(checkpoint, data, out, executor=pool, device=device, precision=precision,
                                      shard_size=shard_size, batch_size=batch_size, top_k=top_k, fprs=fpr,
                                      run_dir=run, force=force, progress=progress, dataset_rows=dataset_rows,
                                      log=lambda msg: err.print(f"dhs: {msg}", markup=False, highlight=False))
        finally:
            if pool is not None:
                pool.close()  # a Dask cluster the command started
        rate = summary["throughput_cutouts_per_s"]
        typer.echo(f"scored {summary['n_scored']} of {summary['n_cutouts']} cutouts on {summary['device']} "
                   f"({summary['n_shards']} shards, {summary['resumed_shards']} already done"
                   + (f", {rate:,.0f} cutouts/s" if rate else "") + f"); {summary['n_failed']} not scored "
                   f"{summary['failed_by_reason'] or ''}")
        for t in summary["thresholds"]:
            typer.echo(f"FPR {t['target_fpr']:g}: threshold {t['threshold']} ({t['n_above']} cutouts above; "
                       f"{t['status']})")
        typer.echo(f"summary in {out / SCORE_SUMMARY}")


class _BarProgress:
    """dhs-core's progress protocol (``task(description, total)``) on one rich display."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self) -> _BarProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def task(self, description: str, total: int | None = None) -> Any:
        from dhs_core.stages import ProgressTask

        bar, task_id = self.bar, self.bar.add_task(description, total=total)

        class _Task(ProgressTask):
            def advance(self, n: int = 1) -> None:
                bar.advance(task_id, n)

            def update(self, **fields: Any) -> None:
                bar.update(task_id, **fields)

            def close(self) -> None:
                bar.update(task_id, visible=False)

        return _Task()
