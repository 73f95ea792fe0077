"""Run comparison: headline metrics of several runs side by side, a paired DeLong test where the
runs scored the same test cutouts, and completeness curves overlaid (``dhs compare``).

Why paired: two finders scored on the *same* cutouts have correlated AUC errors, and the DeLong
test of the difference uses that covariance — it can tell apart AUCs whose separate bootstrap
intervals overlap. On different test sets there is no pairing, and comparing the intervals is all
one can do; the comparison then says why the test is omitted instead of printing a p-value that
does not mean anything. Cutouts are the same when the test splits hold the same galaxy ids with
the same labels and the same PSF and depth (a different synthetic survey reuses ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dhs_core import layout
from dhs_core.cards import NOT_RUN, fmt, load_json
from dhs_core.errors import UserError
from dhs_core.io import write_text
from dhs_eval.layout import COMPARE_HTML, COMPARE_MD, EVALUATE_ARTIFACTS

#: the curve figure written next to compare.md
COMPARE_FIGURE = "compare_completeness_theta_e.png"
#: columns that identify a test cutout for pairing
IDENTITY = ("galaxy_id", "label", "psfsize_r", "psfdepth_r")


@dataclass
class RunSummary:
    label: str
    run_dir: Path
    metrics: dict[str, str] = field(default_factory=dict)
    cells: Any = None


@dataclass
class Pairing:
    a: str
    b: str
    n: int | None = None
    z: float | None = None
    p: float | None = None
    auc_a: float | None = None
    auc_b: float | None = None
    reason: str = ""


def _classification(evaluation: Any) -> dict | None:
    if not isinstance(evaluation, dict):
        return None
    for res in (evaluation.get("evaluators") or {}).values():
        if "splits" in res:
            return res
    return None


def _ci(d: dict | None) -> str:
    d = d or {}
    return f" [{fmt(d.get('low'))}, {fmt(d.get('high'))}]" if d.get("low") is not None else ""


def summarise(run_dir: Path, label: str) -> RunSummary:
    """The headline numbers of one run, each "Not run" / "unreadable: …" when its source is."""
    from dhs_eval import card, selection

    run_dir = Path(run_dir)
    info, problem = load_json(run_dir / layout.RUN_INFO)
    if not isinstance(info, dict):
        raise UserError(f"{run_dir} is not a run directory: {layout.RUN_INFO} is "
                        f"{'absent' if problem == NOT_RUN else problem} (dhs compare takes run directories "
                        "written by dhs run)")
    out = RunSummary(label, run_dir)
    evaluation, problem = load_json(run_dir / EVALUATE_ARTIFACTS["metrics"])
    res = _classification(evaluation)
    test = ((res or {}).get("splits") or {}).get("test") or {}
    m = out.metrics
    m["seed"] = str(((info.get("spec") or {}).get("run") or {}).get("seed"))
    if test.get("status") == "ok":
        m["test cutouts (pos/neg)"] = f"{test['n']:,} ({test['n_positives']}/{test['n_negatives']})"
        m["test ROC AUC [95 % CI]"] = fmt(test["auc"]) + _ci(test.get("auc_bootstrap"))
        m["test AUC DeLong SE"] = fmt(test.get("auc_se_delong"))
        for key, p in (test.get("pauc") or {}).items():
            m[f"test pAUC (FPR ≤ {key}) [95 % CI]"] = fmt(p.get("value")) + _ci(p.get("bootstrap"))
        ta = card.tier_a(run_dir, "test")
        if ta:
            r = next(r for r in ta["recall"] if r["threshold"] == 0.5)
            m["Tier-A recall @0.5 [95 %]"] = (f"{fmt(r['estimate'])} ({r['k']}/{r['n']}) [{fmt(r['low'])}, "
                                             f"{fmt(r['high'])}]" if r["n"] else "not defined (0/0)")
        cal = test.get("calibration") or {}
        m["test ECE"] = fmt(cal.get("ece"))
    else:
        why = problem if evaluation is None else (test.get("status") or "no classification evaluator")
        m["test ROC AUC [95 % CI]"] = why if why else NOT_RUN
    ref = _cells_ref()
    if ref and (run_dir / ref).is_file():
        import pyarrow.parquet as pq

        try:
            out.cells = selection.at_threshold(pq.read_table(run_dir / ref))  # the primary threshold
            tot = selection.summary(out.cells)
            m["completeness k/n"] = f"{tot['n_detected']}/{tot['n_ok']}"
            m["completeness posterior median [68 %]"] = (f"{fmt(tot['completeness_median'])} [{fmt(tot['completeness_low_68'])}, "
                                                        f"{fmt(tot['completeness_high_68'])}]")
        except Exception as exc:  # damaged or lacking counts
            m["completeness k/n"] = f"unreadable: {type(exc).__name__}: {exc}"
    else:
        m["completeness k/n"] = NOT_RUN
    return out


def _cells_ref() -> str | None:
    from dhs_core import artifact
    from dhs_core.errors import PluginError

    try:
        return artifact("selection_function", "cells")
    except PluginError:
        return None


def _test_rows(run_dir: Path) -> tuple[Any, str]:
    """Test-split identity columns and scores sorted by galaxy id, or ``(None, why)``."""
    import numpy as np
    import pyarrow.parquet as pq

    path = Path(run_dir) / EVALUATE_ARTIFACTS["predictions"]
    if not path.is_file():
        return None, f"{run_dir.name} has no {EVALUATE_ARTIFACTS['predictions']}"
    t = pq.read_table(path)
    need = [c for c in (*IDENTITY, "split", "score") if c not in t.column_names]
    if need:
        return None, f"{run_dir.name}'s predictions lack {', '.join(need)}"
    d = {c: np.asarray(t.column(c).to_pylist(), dtype=object if c in ("galaxy_id", "split") else float)
         for c in (*IDENTITY, "split", "score")}
    keep = d["split"] == "test"
    order = np.argsort(d["galaxy_id"][keep], kind="stable")
    return {c: v[keep][order] for c, v in d.items()}, ""


def pair(a: RunSummary, b: RunSummary) -> Pairing:
    """Paired DeLong test of the test-split AUCs of ``a`` and ``b`` when they scored the same
    cutouts; otherwise a Pairing whose ``reason`` says why not."""
    import numpy as np

    from dhs_eval.metrics import delong_test, roc_auc

    out = Pairing(a.label, b.label)
    ra, why_a = _test_rows(a.run_dir)
    rb, why_b = _test_rows(b.run_dir)
    if ra is None or rb is None:
        out.reason = why_a or why_b
        return out
    ids_a, ids_b = set(ra["galaxy_id"]), set(rb["galaxy_id"])
    if ids_a != ids_b:
        out.reason = (f"different test sets: {len(ids_a)} and {len(ids_b)} test cutouts, {len(ids_a & ids_b)} "
                      "galaxy ids in common; DeLong's paired test needs the same cutouts")
        return out
    same = [c for c in IDENTITY[1:] if not np.allclose(ra[c], rb[c], equal_nan=True)]
    if same:
        out.reason = (f"different test sets: the same galaxy ids but different {', '.join(same)} "
                      "(another survey realisation); DeLong's paired test needs the same cutouts")
        return out
    ok = np.isfinite(ra["score"]) & np.isfinite(rb["score"])
    labels = ra["label"][ok].astype(int)
    if labels.min(initial=1) == labels.max(initial=0):
        out.reason = "the shared test set has one class only"
        return out
    out.n = int(ok.sum())
    out.z, out.p = (float(v) for v in delong_test(labels, ra["score"][ok], rb["score"][ok]))
    out.auc_a, out.auc_b = float(roc_auc(labels, ra["score"][ok])), float(roc_auc(labels, rb["score"][ok]))
    return out


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    names = [Path(d).resolve().name for d in run_dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, run_dirs)]


def compare(run_dirs: Sequence[Path]) -> tuple[list[RunSummary], list[Pairing]]:
    if len(run_dirs) < 2:
        raise UserError("dhs compare needs at least two run directories")
    runs = [summarise(Path(d), label) for d, label in zip(run_dirs, _labels(run_dirs))]
    return runs, [pair(runs[0], r) for r in runs[1:]]


def markdown(runs: Sequence[RunSummary], pairs: Sequence[Pairing], figure: str | None) -> str:
    keys = list(dict.fromkeys(k for r in runs for k in r.metrics))
    lines = ["# Run comparison", "", "| metric | " + " | ".join(r.label for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    lines += [f"| {k} | " + " | ".join(r.metrics.get(k, NOT_RUN) for r in runs) + " |" for k in keys]
    lines += ["", "## Paired DeLong test (test split AUC)", "",
              "| runs | cutouts | AUC | AUC | z | p |", "|---|---:|---:|---:|---:|---:|"]
    for p in pairs:
        if p.p is not None:
            lines.append(f"| {p.a} vs {p.b} | {p.n:,} | {fmt(p.auc_a)} | {fmt(p.auc_b)} | {p.z:.3f} | {p.p:.3g} |")
        else:
            lines.append(f"| {p.a} vs {p.b} | — | — | — | — | omitted: {p.reason} |")
    lines += ["", "Runs: " + "; ".join(f"{r.label} = `{r.run_dir}`" for r in runs)]
    if figure:
        lines += ["", f"Completeness against θE (posterior median, 68 % band): [{figure}]({figure})"]
    return "\n".join(lines) + "\n"


def overlay_figure(path: Path, runs: Sequence[RunSummary]) -> Path | None:
    """Marginal completeness against θE of every run with cells, 68 % bands, one axis."""
    from dhs_eval import plots, selection

    curves = []
    for r in runs:
        if r.cells is not None and {"theta_e", *selection.COUNT_COLUMNS} <= set(r.cells):
            curves.append((r.label, selection.marginal(r.cells, "theta_e")))
    if not curves:
        return None
    return plots.completeness_overlay(path, curves)


def write(run_dirs: Sequence[Path], out_dir: Path) -> tuple[str, Path, Path]:
    """compare.md, compare.html and the overlay figure in ``out_dir``; returns the Markdown."""
    from dhs_eval.report import embed_png, markdown_to_html

    runs, pairs = compare(run_dirs)
    out_dir = Path(out_dir)
    fig = overlay_figure(out_dir / COMPARE_FIGURE, runs)
    text = markdown(runs, pairs, COMPARE_FIGURE if fig else None)
    write_text(out_dir / COMPARE_MD, text)
    body = markdown_to_html(text, out_dir)
    if fig:
        body += f'<figure><img alt="{COMPARE_FIGURE}" src="{embed_png(fig)}"></figure>'
    from dhs_eval.report import _SCRIPT, _STYLE

    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Run comparison</title>"
            f"<style>{_STYLE}</style></head><body>{body}<script>{_SCRIPT}</script></body></html>\n")
    write_text(out_dir / COMPARE_HTML, page)
    return text, out_dir / COMPARE_MD, out_dir / COMPARE_HTML


def sweep_markdown(base_dir: Path, run_dirs: Sequence[Path]) -> str | None:
    """A sweep's comparison (appended to its comparison.md by the runner): the same tables as
    ``dhs compare``, with the overlay figure written next to it; None for fewer than two points."""
    if len(run_dirs) < 2:
        return None
    runs, pairs = compare(run_dirs)
    fig = overlay_figure(Path(base_dir) / COMPARE_FIGURE, runs)
    text = markdown(runs, pairs, COMPARE_FIGURE if fig else None)
    return "## Metrics with intervals" + text[len("# Run comparison"):].replace("\n## ", "\n### ")
