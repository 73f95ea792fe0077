"""The ``evaluate`` stage: join scores with the manifest and run every ``[[evaluate]]`` evaluator.

Contract 6: section ``evaluate`` (a list of evaluator components); needs ``train/scores.parquet``
and ``data/manifest.parquet``; produces ``evaluate/predictions.parquet`` and
``evaluate/metrics.json`` (plus the evaluators' PNGs).
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from dhs_core import Section, Slot, Stage, StageContext, plugins
from dhs_core.io import atomic_path, write_json
from dhs_eval._json import jsonable
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.predictions import build_predictions


class EvaluateStage(Stage):
    """Score statistics of the held-out splits: predictions.parquet, metrics.json and figures."""

    name = "evaluate"
    sections = {
        "evaluate": Section(Slot("evaluator", many=True),
                            description="evaluators to run, one [[evaluate]] entry each (e.g. name = 'classification')"),
    }
    trigger = "evaluate"
    needs = ("train/scores.parquet", "data/manifest.parquet")
    produces = ("evaluate/predictions.parquet", "evaluate/metrics.json")

    def run(self, ctx: StageContext) -> dict[str, float]:
        truth_path = ctx.path("data/truth.parquet")
        predictions = build_predictions(
            pq.read_table(ctx.path("train/scores.parquet")),
            pq.read_table(ctx.path("data/manifest.parquet")),
            pq.read_table(truth_path) if truth_path.exists() else None,
        )
        out_dir = ctx.stage_dir
        with atomic_path(out_dir / "predictions.parquet") as tmp:
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
            comp = plugins.get("evaluator", entry.name, where=f"evaluate[{i}].name")
            config = comp.Config(**entry.model_dump(exclude={"name"}))
            key = entry.name if entry.name not in results else f"{entry.name}_{i}"
            ctx.log(f"evaluate: running evaluator {key!r}")
            context = EvaluationContext(run_dir=ctx.run_dir, seed=ctx.seed_for(key), log=ctx.log)
            result = comp.impl(config).evaluate(predictions, out_dir, context)
            results[key] = {"component": {"name": comp.name, "distribution": comp.distribution,
                                          "version": comp.version}, **result}
            prefix = "" if key == "classification" else f"{key}."
            headline.update({f"{prefix}{k}": float(v) for k, v in (result.get("headline") or {}).items()})
        write_json(out_dir / "metrics.json", jsonable({"predictions": summary, "evaluators": results}))
        return headline
