"""Experiment trackers driven by the lifecycle hooks (docs/eval.md, "Trackers").

dhs-eval's plugin implements ``dhs_run_started`` / ``dhs_epoch_end`` / ``dhs_run_finished`` and
forwards them to the trackers the run's ``[trackers]`` section enables (:mod:`.config`). Each
tracker is a small class with ``start(run)``, ``epoch(epoch, metrics)``, ``finish(results)``;
its library (tensorboard, mlflow — optional extras of dhs-eval) is imported only when a spec
enables it. A tracker that raises is reported by dhs-core as a LifecycleHookWarning and counted;
the run goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core.cards import load_json

#: open trackers per run directory (a sweep runs its points one after another)
_active: dict[str, list[Any]] = {}


def _key(run: Any) -> str:
    return str(Path(run.run_dir).resolve())


def start(run: Any) -> None:
    cfg = getattr(run.spec, "trackers", None)
    _active.pop(_key(run), None)
    if cfg is None:
        return
    trackers: list[Any] = []
    _active[_key(run)] = trackers
    if cfg.tensorboard is not None:
        from dhs_eval.trackers.tensorboard import TensorBoardTracker

        trackers.append(TensorBoardTracker(run, cfg.tensorboard))
    if cfg.mlflow is not None:
        from dhs_eval.trackers.mlflow import MLflowTracker

        trackers.append(MLflowTracker(run, cfg.mlflow))
    # each tracker starts on its own, so one failing leaves the others running
    _each(run, "start")


def _each(run: Any, method: str, *args: Any) -> None:
    errors = []
    for tracker in list(_active.get(_key(run), [])):
        try:
            getattr(tracker, method)(*args)
        except Exception as exc:
            errors.append(f"{type(tracker).__name__}.{method}: {type(exc).__name__}: {exc}")
    if errors:
        # raised once all trackers had their turn; dhs-core turns it into a counted warning
        raise RuntimeError("; ".join(errors))


def epoch(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    _each(run, "epoch", epoch, metrics)


def finish(run: Any, results: dict[str, Any]) -> None:
    try:
        _each(run, "finish", results)
    finally:
        _active.pop(_key(run), None)


def figures(run_dir: Path) -> list[tuple[str, Path]]:
    """``(tag, path)`` of the figures a tracker logs at the end of a run: the ROC and the
    completeness figures (whichever exist)."""
    from dhs_eval.layout import (
        COMPLETENESS_HEATMAP,
        EVALUATE_ARTIFACTS,
        EVALUATE_DIR,
        HEATMAP_AXES,
        REPORT_DIR,
    )

    out = []
    evaluation, _ = load_json(run_dir / EVALUATE_ARTIFACTS["metrics"])
    if isinstance(evaluation, dict):
        for key, res in (evaluation.get("evaluators") or {}).items():
            for f in res.get("figures") or []:
                if "roc" in f:
                    out.append((f"{key}/roc", run_dir / EVALUATE_DIR / f))
    for x, y in HEATMAP_AXES:
        name = COMPLETENESS_HEATMAP.format(x=x, y=y)
        out.append((f"selection_function/{Path(name).stem}", run_dir / REPORT_DIR / name))
    return [(tag, p) for tag, p in out if p.is_file()]


def flat_params(spec: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved spec as dotted ``key -> value`` strings (an MLflow run's params)."""
    import json

    out: dict[str, str] = {}
    for k, v in spec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v)
    return out
