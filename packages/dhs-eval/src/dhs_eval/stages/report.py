"""The ``report`` stage: MODEL_CARD.md plus training-curve and completeness-heatmap PNGs.

Always enabled (trigger None) and ordered after every other installed stage, so that the card
can include every enabled stage's section (:mod:`dhs_eval.model_card`) and reruns whenever an
upstream stage reruns. Sections whose artifacts are absent say "Not run".

The module imports no plotting or numerical library at import time: registering plugins and
listing stages import it.
"""

from __future__ import annotations

from dhs_core import Stage, StageContext, artifact, plugins
from dhs_core.errors import PluginError
from dhs_core.io import write_text
from dhs_eval.layout import (
    COMPLETENESS_HEATMAP,
    HEATMAP_AXES,
    MODEL_CARD,
    REPORT_ARTIFACTS,
    REPORT_DIR,
    TRAINING_CURVES,
)

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
    trigger = None
    inputs = ("data", "preprocess", "model", "train", "evaluate", "selection_function")
    produces = (MODEL_CARD,)
    artifacts = REPORT_ARTIFACTS

    @property
    def after(self) -> tuple[str, ...]:  # type: ignore[override]
        """Every other installed stage: the card shows them all."""
        return tuple(sorted(n for n in plugins.components("stage") if n != self.name))

    @property
    def optional_needs(self) -> tuple[str, ...]:  # type: ignore[override]
        """What the report's own figures are drawn from, where the writing stage is installed."""
        return tuple(p for p in (_installed_artifact(*ref) for ref in FIGURE_INPUTS) if p)

    def run(self, ctx: StageContext) -> None:
        from dhs_core.runner import order_stages
        from dhs_core.spec import enabled_stages
        from dhs_eval import model_card

        run_dir = ctx.run_dir
        self._figures(ctx)
        stages = order_stages(enabled_stages(ctx.spec))
        write_text(run_dir / MODEL_CARD, model_card.render(run_dir, stages))
        ctx.log(f"report: wrote {run_dir / MODEL_CARD}")
        return None

    def _figures(self, ctx: StageContext) -> None:
        """Training curves and completeness heatmaps, from whichever inputs exist."""
        metrics, cells_ref = (_installed_artifact(*ref) for ref in FIGURE_INPUTS)
        if metrics and (ctx.run_dir / metrics).is_file():
            from dhs_core.cards import read_jsonl
            from dhs_eval import plots

            rows = read_jsonl(ctx.run_dir / metrics)
            if rows:
                plots.training_curves_figure(ctx.run_dir / REPORT_DIR / TRAINING_CURVES, rows)
        if cells_ref and (ctx.run_dir / cells_ref).is_file():
            import pyarrow.parquet as pq

            from dhs_eval import plots, selection

            cells = pq.read_table(ctx.run_dir / cells_ref)
            for x, y in HEATMAP_AXES:
                if {x, y, *selection.COUNT_COLUMNS} <= set(cells.column_names):
                    plots.completeness_heatmap(ctx.run_dir / REPORT_DIR / COMPLETENESS_HEATMAP.format(x=x, y=y),
                                               cells, x, y)
