"""The selection-function stage's section of MODEL_CARD.md: pooled completeness, the detection
threshold and counts from meta.json, marginal completeness per grid axis, and the report's heatmaps.

Statistics come from :mod:`dhs_eval.selection` (the one implementation the stage itself uses);
returned by :meth:`dhs_inject.selection.stage.SelectionFunctionStage.card_section`.
"""

from __future__ import annotations

from pathlib import Path

from dhs_core.cards import NOT_RUN, fmt, kv_lines, read_json
from dhs_eval import selection
from dhs_eval.layout import COMPLETENESS_HEATMAP, HEATMAP_AXES, REPORT_DIR
from dhs_inject.layout import ARTIFACTS


def section(run_dir: Path) -> str:
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    lines = ["## Selection function", ""]
    path = run_dir / ARTIFACTS["cells"]
    if not path.is_file():
        return "\n".join(lines + [f"{NOT_RUN} (no {ARTIFACTS['cells']})."])
    cells = pq.read_table(path)
    if not set(selection.COUNT_COLUMNS) <= set(cells.column_names):
        return "\n".join(lines + [f"{path.name} lacks n_detected / n_ok: not summarised."])
    tot = selection.summary(cells)
    lines += [f"- Pooled completeness: {fmt(tot['completeness'])} (68 %: {fmt(tot['completeness_low_68'])}–"
              f"{fmt(tot['completeness_high_68'])}; {tot['n_detected']:,}/{tot['n_ok']:,} injections detected)"]
    meta = read_json(run_dir / ARTIFACTS["meta"])
    if isinstance(meta, dict):
        lines += [f"- {Path(ARTIFACTS['meta']).name}:"] + kv_lines(
            {k: v for k, v in meta.items() if not isinstance(v, (list, dict))}, "  ")
    for axis, table in selection.marginal_tables(cells).items():
        lines += ["", f"| {axis} | completeness (median) | 68 % interval | k/n |", "|---:|---:|---|---:|"]
        for row in selection.as_rows(table):
            lines.append(f"| {row[axis]:.4g} | {fmt(row['completeness'])} | {fmt(row['completeness_low_68'])}–"
                         f"{fmt(row['completeness_high_68'])} | {row['n_detected']:,}/{row['n_ok']:,} |")
    figures = [f"{REPORT_DIR}/{COMPLETENESS_HEATMAP.format(x=x, y=y)}" for x, y in HEATMAP_AXES]
    return "\n".join(lines + [""] + [f"![{Path(f).name}]({f})" for f in figures if (run_dir / f).is_file()])
