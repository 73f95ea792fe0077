"""The ``report`` stage: MODEL_CARD.md, report.html, the card's CSV companions and the report's
figures (all written by :func:`dhs_eval.report.write_report`, which ``dhs report`` also calls).

Always enabled (trigger None) and ordered after every other installed stage, so that the card
can include every enabled stage's section (:mod:`dhs_eval.model_card`) and reruns whenever an
upstream stage reruns. Sections whose artifacts are absent say "Not run".

The module imports no plotting or numerical library at import time: registering plugins and
listing stages import it.
"""

from __future__ import annotations

from dhs_core import Section, Stage, StageContext, artifact, plugins
from dhs_core.errors import PluginError
from dhs_eval.layout import MODEL_CARD, REPORT_ARTIFACTS, REPORT_HTML
from dhs_eval.trackers.config import TrackersConfig

#: artifacts of other stages the report draws figures from: (stage, artifact key)
FIGURE_INPUTS = (("train", "metrics"), ("selection_function", "cells"))


def _installed_artifact(stage: str, key: str) -> str | None:
    """Path of another stage's artifact, or None when that stage is not installed."""
    try:
        return artifact(stage, key)
    except PluginError:
        return None


class ReportStage(Stage):
    """Write MODEL_CARD.md from the run's provenance and every enabled stage's card section."""

    name = "report"
    # [trackers] lives here because every run has a report stage; trackers observe and change no
    # output, so the section is not hashed (adding one reruns nothing)
    sections = {"trackers": Section(TrackersConfig, required=False, hashed=False,
                                    description="experiment trackers (tensorboard, mlflow) fed by the lifecycle hooks")}
    trigger = None
    # [[gates]] is read for the card's "Decision gates" table: changing a gate rewrites the card
    inputs = ("data", "preprocess", "model", "train", "evaluate", "selection_function", "gates")
    produces = (MODEL_CARD, REPORT_HTML)
    artifacts = REPORT_ARTIFACTS

    @property
    def after(self) -> tuple[str, ...]:  # type: ignore[override]
        """Every other installed stage: the card shows them all."""
        return tuple(sorted(n for n in plugins.components("stage") if n != self.name))

    @property
    def optional_needs(self) -> tuple[str, ...]:  # type: ignore[override]
        """What the report's own figures are drawn from, where the writing stage is installed."""
        return tuple(p for p in (_installed_artifact(*ref) for ref in FIGURE_INPUTS) if p)

    def sweep_section(self, base_dir, run_dirs):
        """The sweep's points compared as ``dhs compare`` compares runs (same code): metrics with
        intervals, paired DeLong tests against the first point, completeness overlaid."""
        from dhs_eval.compare import sweep_markdown

        return sweep_markdown(base_dir, run_dirs)

    def run(self, ctx: StageContext) -> None:
        from dhs_core.runner import order_stages
        from dhs_core.spec import enabled_stages
        from dhs_eval.report import write_report

        html = write_report(ctx.run_dir, order_stages(enabled_stages(ctx.spec)))
        ctx.log(f"report: wrote {ctx.run_dir / MODEL_CARD} and {html}")
        return None
