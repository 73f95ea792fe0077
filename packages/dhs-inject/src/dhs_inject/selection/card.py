"""The selection-function stage's section of MODEL_CARD.md: the detection threshold, the pooled
k/n, and one summary table per grid axis (k/n pooled over the other axes, with the Jeffreys
posterior median and 68 % / 95 % intervals).

The tables say "k/n" and "posterior median" — not "completeness" alone — because with tens of
injections per cell the median of Beta(k+½, n−k+½) differs visibly from k/n and a reader must
know which one is printed. Every cell is in the linked CSV the report writes, never in the card.
With several thresholds (long-form cells) the section describes the primary one and adds one
line per threshold: its value and source, pooled k/n and the mean over cells (as published).
Counts are read from ``n_detected`` / ``n_ok`` and the posterior recomputed by
:mod:`dhs_eval.selection` (the one implementation), so the card does not depend on which
derived columns cells.parquet carries. Returned by
:meth:`dhs_inject.selection.stage.SelectionFunctionStage.card_section`.
"""

from __future__ import annotations

from pathlib import Path

from dhs_core.cards import NOT_RUN, field_table, fmt, load_json
from dhs_eval import selection
from dhs_eval.layout import CELLS_CSV, COMPLETENESS_HEATMAP, HEATMAP_AXES, REPORT_DIR
from dhs_inject.layout import ARTIFACTS


def _interval(row: dict, level: int) -> str:
    return f"{fmt(row[f'completeness_low_{level}'])}–{fmt(row[f'completeness_high_{level}'])}"


def section(run_dir: Path) -> str:
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    lines = ["## Selection function", ""]
    path = run_dir / ARTIFACTS["cells"]
    if not path.is_file():
        return "\n".join(lines + [f"{NOT_RUN} (no {ARTIFACTS['cells']})."])
    try:
        cells = pq.read_table(path)
    except Exception as exc:  # a damaged file: say so and let the rest of the card render
        return "\n".join(lines + [f"unreadable: {type(exc).__name__}: {exc} ({ARTIFACTS['cells']})."])
    if not set(selection.COUNT_COLUMNS) <= set(cells.column_names):
        return "\n".join(lines + [f"{path.name} lacks n_detected / n_ok: not summarised."])
    names = selection.threshold_names(cells)
    every = cells
    cells = selection.at_threshold(cells)  # the primary threshold
    tot = selection.summary(cells)
    meta, problem = load_json(run_dir / ARTIFACTS["meta"])
    meta = meta if isinstance(meta, dict) else {}
    inj = meta.get("injector") or {}
    thr = meta.get("threshold_detail") or {}
    threshold = (f"p ≥ {fmt(meta['threshold'])} ({thr.get('source', 'not recorded')}"
                 + (f", target FPR {meta.get('target_fpr'):g}, achieved {fmt(meta.get('achieved_fpr'))}"
                    f" on {meta.get('n_valid_negatives')} negatives" if meta.get("target_fpr") is not None else "")
                 + ")" + (f"; {thr['status']}" if thr.get("status") not in (None, "ok") else "")
                 ) if "threshold" in meta else (problem or "not recorded")
    csv = f"{REPORT_DIR}/{CELLS_CSV}"
    # θE, the axis the selection function is read along, gets the table; the other axes one
    # line each (k/n and posterior median [68 %] per bin)
    figures = [f"{REPORT_DIR}/{COMPLETENESS_HEATMAP.format(x=x, y=y)}" for x, y in HEATMAP_AXES]
    present = [f for f in figures if (run_dir / f).is_file()]
    others, table_lines = [], []
    per_threshold = []
    details = {d.get("name"): d for d in meta.get("thresholds") or [] if isinstance(d, dict)}
    for name in names:
        t = selection.summary(selection.at_threshold(every, name))
        d = details.get(name, {})
        how = (f"p ≥ {fmt(d.get('threshold'))}" + (f", achieved FPR {fmt(d.get('achieved_fpr'))}"
                                                   if d.get("achieved_fpr") is not None else ""))
        per_threshold.append((f"Threshold {name}", f"{how}; pooled k/n {t['n_detected']:,}/{t['n_ok']:,} = "
                              f"{fmt(t['completeness'])}; mean over {t['n_cells'] - t['n_cells_empty']} cells "
                              f"{fmt(t['mean_over_cells'])}"))
    for name, d in details.items():
        if not d.get("rows", True):
            per_threshold.append((f"Threshold {name}", f"no cells: {d.get('status')}"))
    for axis, table in selection.marginal_tables(cells).items():
        rows = selection.as_rows(table)
        if axis != "theta_e":
            if len(rows) > 1:  # one bin: the pooled row above already says it
                others.append((f"Pooled by {axis} (k/n, median [68 %])", "; ".join(
                    f"{row[axis]:.4g}: {row['n_detected']}/{row['n_ok']}, {fmt(row['completeness_median'])} "
                    f"[{_interval(row, 68)}]" for row in rows)))
            continue
        table_lines += ["", f"| {axis} | k/n | posterior median | 68 % interval | 95 % interval |", "|---:|---:|---:|---|---|"]
        for row in rows:
            table_lines.append(f"| {row[axis]:.4g} | {row['n_detected']:,}/{row['n_ok']:,} | {fmt(row['completeness_median'])} | "
                         f"{_interval(row, 68)} | {_interval(row, 95)} |")
    lines += field_table([
        ("Injector", inj.get("name")),
        ("Injection QA", _qa_line(meta)),
        ("Detection threshold", threshold),
        ("Injections detected / scored (k/n)", f"{tot['n_detected']:,}/{tot['n_ok']:,} "
         f"(failed: {meta.get('n_failed', 'not recorded')})"),
        ("Pooled posterior median [68 %; 95 %]", f"{fmt(tot['completeness_median'])} [{_interval(tot, 68)}; "
         f"{_interval(tot, 95)}]"),
        ("Mean over cells of k/n (as published)", f"{fmt(tot['mean_over_cells'])} over "
         f"{tot['n_cells'] - tot['n_cells_empty']} cells with injections ({tot['n_cells_empty']} empty)"),
        *per_threshold,
        ("Grid cells", f"{tot['n_cells']} ({meta.get('per_cell', '?')} injections requested per cell); every cell: "
         + (f"[{csv}]({csv})" if (run_dir / csv).is_file() else f"[{ARTIFACTS['cells']}]({ARTIFACTS['cells']})")),
        *others,
        ("Heatmaps", ", ".join(f"[{Path(f).name}]({f})" for f in present) or "not drawn yet (the report stage draws them)"),
    ])
    lines += table_lines
    lines += _prior_set_lines(meta)
    lines += _sensitivity_lines(meta, names[0] if names else None)
    return "\n".join(lines)


def _qa_line(meta: dict) -> str:
    qa = meta.get("qa")
    if not isinstance(qa, dict):
        return "Not run"
    link = f"[{ARTIFACTS['qa']}]({ARTIFACTS['qa']})"
    if qa.get("passed"):
        return f"passed ({link})"
    return f"FAILED: {', '.join(qa.get('failed') or [])} (qa = {qa.get('mode')!r}; {link})"


def _range(bounds) -> str:
    return f"{bounds[0]:g}–{bounds[1]:g}"


def _prior_set_lines(meta: dict) -> list[str]:
    """The prior sets side by side: per threshold, pooled k/n and the mean over cells of each set."""
    sets = meta.get("prior_sets")
    if not isinstance(sets, dict) or not sets:
        return []
    names = list(sets)
    out = ["", "Prior sets (each its own cells; k/n pooled, and the mean over cells as published; every cell: "
           f"[{ARTIFACTS['prior_sets']}]({ARTIFACTS['prior_sets']})):", "",
           "| threshold | " + " | ".join(f"{n}: θE {_range(sets[n]['theta_e'])}\", β/θE {_range(sets[n]['beta_frac'])}, "
                                        f"r {_range(sets[n]['src_r_mag'])}" for n in names) + " |",
           "|---|" + "---:|" * len(names)]
    thresholds = list(dict.fromkeys(t for n in names for t in (sets[n].get("by_threshold") or {})))
    for thr in thresholds:
        cells = []
        for n in names:
            s = (sets[n].get("by_threshold") or {}).get(thr)
            cells.append(sets[n].get("status", "—") if s is None else
                         f"{s['n_detected']:,}/{s['n_ok']:,} = {fmt(s['completeness'])}; "
                         f"mean over cells {fmt(s['mean_over_cells'])}")
        out.append(f"| {thr} | " + " | ".join(cells) + " |")
    return out


def _sensitivity_lines(meta: dict, primary: str | None) -> list[str]:
    """Delta C per sensitivity variant at the primary threshold (percentage points), when run."""
    sens = meta.get("sensitivity")
    if not isinstance(sens, dict) or not sens:
        return []
    out = ["", "Sensitivity (common random numbers; Delta C = C_variant - C, k/n, percentage points"
           + (f", threshold {primary}" if primary else "") + "; every cell: "
           f"[{ARTIFACTS['sensitivity']}]({ARTIFACTS['sensitivity']})):", "",
           "| variant | mean ΔC | max \\|ΔC\\| | std ΔC | cells |", "|---|---:|---:|---:|---:|"]
    for name, info in sens.items():
        by = (info or {}).get("by_threshold") or {}
        row = by.get(primary) if primary in by else next(iter(by.values()), {})

        def pp(v):
            return "—" if v is None else f"{100 * v:+.2f}"
        out.append(f"| {name} | {pp(row.get('mean_delta'))} | {pp(row.get('max_abs_delta'))} | "
                   f"{pp(row.get('std_delta'))} | {row.get('n_cells', 0)} |")
    return out
