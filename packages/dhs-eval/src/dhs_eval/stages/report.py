"""The ``report`` stage: MODEL_CARD.md plus training-curve and completeness-heatmap PNGs.

Contract 7: always enabled (trigger None), ordered after every other stage, produces
``MODEL_CARD.md``; parts whose artifacts are absent say "Not run". Its optional needs make it
rerun whenever an upstream stage reruns.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from dhs_core import Stage, StageContext
from dhs_core.io import write_text
from dhs_eval import model_card, plots, selection

#: (x, y) marginal heatmaps, each drawn when both columns exist in cells.parquet
HEATMAPS = (("theta_e", "psfsize_r"), ("theta_e", "psfdepth_r"))


class ReportStage(Stage):
    """Write MODEL_CARD.md from whatever the run produced."""

    name = "report"
    trigger = None
    after = ("data", "train", "evaluate", "selection_function")
    optional_needs = ("data/manifest.parquet", "data/data_report.json", "train/metrics.jsonl",
                      "train/scores.parquet", "evaluate/metrics.json", "selection_function/cells.parquet",
                      "selection_function/meta.json")
    inputs = ("data", "preprocess", "model", "train", "evaluate", "selection_function")
    produces = ("MODEL_CARD.md",)

    def run(self, ctx: StageContext) -> None:
        run_dir = ctx.run_dir
        rows = model_card.read_jsonl(run_dir / "train" / "metrics.jsonl")
        if rows:
            plots.training_curves_figure(ctx.stage_dir / "training_curves.png", rows)
        heatmaps = []
        cells_path = run_dir / "selection_function" / "cells.parquet"
        if cells_path.is_file():
            cells = pq.read_table(cells_path)
            for x, y in HEATMAPS:
                if {x, y, *selection.COUNT_COLUMNS} <= set(cells.column_names):
                    name = f"completeness_{x}_{y}.png"
                    plots.completeness_heatmap(ctx.stage_dir / name, selection.marginal(cells, (x, y)), x, y)
                    heatmaps.append(name)
        write_text(run_dir / "MODEL_CARD.md", model_card.render(run_dir, heatmaps))
        ctx.log(f"report: wrote {run_dir / 'MODEL_CARD.md'}")
        return None
