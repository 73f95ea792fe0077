"""The ``evaluate`` stage: join scores with the manifest and run every ``[[evaluate]]`` evaluator.

Section ``evaluate`` (a list of evaluator components); needs the train stage's scores and the data
stage's manifest (and reads its truth table when present); writes ``predictions.parquet`` and
``metrics.json`` in its directory, plus the evaluators' PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from dhs_core import Section, Slot, Stage, StageContext, artifact, plugins
from dhs_core.io import atomic_path, write_json
from dhs_eval._json import jsonable
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.layout import EVALUATE_ARTIFACTS
from dhs_eval.predictions import build_predictions


class EvaluateStage(Stage):
    """Score statistics of the held-out splits: predictions.parquet, metrics.json and figures."""

    name = "evaluate"
    sections = {
        "evaluate": Section(Slot("evaluator", many=True),
                            description="evaluators to run, one [[evaluate]] entry each (e.g. name = 'classification')"),
    }
    trigger = "evaluate"
    artifacts = EVALUATE_ARTIFACTS
    produces = (EVALUATE_ARTIFACTS["predictions"], EVALUATE_ARTIFACTS["metrics"])

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        """The train stage's scores and the data stage's manifest (asked of the installed stages)."""
        return (artifact("train", "scores"), artifact("data", "manifest"))

    def run(self, ctx: StageContext) -> dict[str, float]:
        truth_path = ctx.path(artifact("data", "truth"))
        predictions = build_predictions(
            pq.read_table(ctx.path(artifact("train", "scores"))),
            pq.read_table(ctx.path(artifact("data", "manifest"))),
            pq.read_table(truth_path) if truth_path.exists() else None,
        )
        out_dir = ctx.stage_dir
        with atomic_path(ctx.path(EVALUATE_ARTIFACTS["predictions"])) as tmp:
            pq.write_table(predictions, tmp)
        splits = pc.value_counts(predictions.column("split")).to_pylist()
        summary: dict[str, Any] = {
            "n": predictions.num_rows,
            "n_nan_scores": int(pc.sum(pc.is_nan(predictions.column("score")).cast("int64")).as_py() or 0)
            + predictions.column("score").null_count,
            "by_split": {row["values"]: row["counts"] for row in splits},
        }
        results: dict[str, Any] = {}
        headline: dict[str, float] = {}
        for i, entry in enumerate(ctx.spec.evaluate or []):
            comp, _ = plugins.resolve("evaluator", entry, where=f"evaluate[{i}]")
            evaluator = plugins.build("evaluator", entry, where=f"evaluate[{i}]")
            key = entry.name if entry.name not in results else f"{entry.name}_{i}"
            ctx.log(f"evaluate: running evaluator {key!r}")
            context = EvaluationContext(run_dir=ctx.run_dir, seed=ctx.seed_for(key), log=ctx.log)
            result = evaluator.evaluate(predictions, out_dir, context)
            results[key] = {"component": {"name": comp.name, "distribution": comp.distribution,
                                          "version": comp.version}, **result}
            prefix = "" if key == "classification" else f"{key}."
            headline.update({f"{prefix}{k}": float(v) for k, v in (result.get("headline") or {}).items()})
        write_json(ctx.path(EVALUATE_ARTIFACTS["metrics"]), jsonable({"predictions": summary, "evaluators": results}))
        return headline

    def card_section(self, run_dir: Path) -> str:
        from dhs_eval.card import section

        return section(run_dir)
