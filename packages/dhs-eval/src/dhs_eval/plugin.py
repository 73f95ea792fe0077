"""Hook implementations of dhs-eval: this module only wires hooks.

Registration stays light: the evaluator is registered as a ``"module:attr"`` string next to its
Config (whose module imports no numerical or plotting library), and the stage modules import
scikit-learn, scipy and matplotlib only inside the functions that use them.
"""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_evaluators(register):
    from dhs_eval.evaluators.config import ClassificationConfig, TierAConfig

    register("classification", "dhs_eval.evaluators.classification:ClassificationEvaluator",
             config=ClassificationConfig,
             summary="AUC, pAUC, TPR@FPR / FPR@TPR tables, calibration, bootstrap and DeLong intervals, strata.")
    register("tier_a", "dhs_eval.evaluators.tier_a:TierAEvaluator", config=TierAConfig,
             summary="Tier-A (confirmed) lenses vs all negatives: AUC with DeLong and bootstrap intervals, "
                     "recall and FPR at p > 0.3 / 0.5 with Jeffreys intervals.")


@hookimpl
def register_stages(register):
    from dhs_eval.stages.evaluate import EvaluateStage
    from dhs_eval.stages.report import ReportStage

    register("evaluate", EvaluateStage())
    register("report", ReportStage())


@hookimpl
def register_commands(app):
    from dhs_eval.cli import register

    register(app)


# Lifecycle hooks: forwarded to the experiment trackers a run's [trackers] section enables
# (dhs_eval.trackers); without that section they return at once.


@hookimpl
def dhs_run_started(run):
    if getattr(run.spec, "trackers", None) is not None:
        from dhs_eval import trackers

        trackers.start(run)


@hookimpl
def dhs_epoch_end(run, epoch, metrics):
    if getattr(run.spec, "trackers", None) is not None:
        from dhs_eval import trackers

        trackers.epoch(run, epoch, metrics)


@hookimpl
def dhs_run_finished(run, results):
    if getattr(run.spec, "trackers", None) is not None:
        from dhs_eval import trackers

        trackers.finish(run, results)
