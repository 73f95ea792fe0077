"""Hook implementations of dhs-eval: this module only wires hooks."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_evaluators(register):
    from dhs_eval.evaluators.classification import ClassificationConfig, ClassificationEvaluator

    register("classification", ClassificationEvaluator, config=ClassificationConfig)


@hookimpl
def register_stages(register):
    from dhs_eval.stages.evaluate import EvaluateStage
    from dhs_eval.stages.report import ReportStage

    register("evaluate", EvaluateStage())
    register("report", ReportStage())
