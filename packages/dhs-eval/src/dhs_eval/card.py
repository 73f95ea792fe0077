"""The evaluate stage's section of MODEL_CARD.md: every evaluator's results, test split first.

Also :func:`split_summary`, the Markdown of one split of the ``classification`` evaluator, for
any section that shows such a result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core.cards import NOT_RUN, fmt, read_json
from dhs_eval.layout import EVALUATE_ARTIFACTS, EVALUATE_DIR


def _ci(boot: dict | None) -> str:
    if not boot:
        return ""
    return f" (95 % bootstrap CI {fmt(boot.get('low'))}–{fmt(boot.get('high'))}, {boot.get('n_resamples')} resamples)"


def split_summary(res: dict[str, Any]) -> list[str]:
    """Counts, AUC with intervals, pAUC, calibration, operating-point tables and strata of one split."""
    if res.get("status") != "ok":
        return [f"- {res.get('status')}"]
    lines = [f"- Cutouts: {res['n']:,} ({res['n_positives']:,} positives, {res['n_negatives']:,} negatives, "
             f"{res['n_nan_scores']:,} NaN scores excluded)",
             f"- ROC AUC: {fmt(res['auc'])} ± {fmt(res['auc_se_delong'])} (DeLong SE){_ci(res.get('auc_bootstrap'))}"]
    for key, p in res["pauc"].items():
        lines.append(f"- pAUC (FPR ≤ {key}, McClish): {fmt(p['value'])}{_ci(p.get('bootstrap'))}")
    cal = res["calibration"]
    lines.append(f"- ECE / MCE ({cal['n_bins']} bins): {fmt(cal['ece'])} / {fmt(cal['mce'])}; "
                 f"positives only: {fmt(cal['ece_positives'])} / {fmt(cal['mce_positives'])}")
    lines += ["", "| target FPR | TPR | 95 % interval | threshold | achieved FPR |", "|---:|---:|---|---:|---:|"]
    for r in res["tpr_at_fpr"]:
        if r["status"] == "ok":
            lines.append(f"| {r['target_fpr']:g} | {fmt(r['tpr'])} ({r['n_detected']}/{r['n_positives']}) | "
                         f"{fmt(r['tpr_low'])}–{fmt(r['tpr_high'])} | {fmt(r['threshold'], 6)} | {fmt(r['achieved_fpr'])} |")
        else:
            lines.append(f"| {r['target_fpr']:g} | {r['status']} | | | |")
    lines += ["", "| target TPR | FPR | 95 % interval | threshold |", "|---:|---:|---|---:|"]
    for r in res["fpr_at_tpr"]:
        if r["status"] == "ok":
            lines.append(f"| {r['target_tpr']:g} | {fmt(r['fpr'])} ({r['n_false_positive']}/{r['n_negatives']}) | "
                         f"{fmt(r['fpr_low'])}–{fmt(r['fpr_high'])} | {fmt(r['threshold'], 6)} |")
        else:
            lines.append(f"| {r['target_tpr']:g} | {r['status']} | | |")
    strata = res.get("strata") or {}
    rows = [p for key in ("recall_by_tier", "fpr_by_pool", "fpr_by_confuser_category") for p in strata.get(key, [])]
    for key, val in strata.items():
        if key.startswith("by_"):
            rows += val["recall"] + val["fpr"]
    if rows:
        lines += ["", "Strata (Jeffreys intervals unless configured otherwise):", ""]
        lines += [f"- {p['text']}" + (f" [{fmt(p['low'])}, {fmt(p['high'])}]" if p["n"] else "") for p in rows]
    return lines + [""]


def section(run_dir: Path) -> str:
    """``## Evaluation metrics``: each evaluator with its provider, split summaries and figures."""
    metrics = EVALUATE_ARTIFACTS["metrics"]
    evaluation = read_json(Path(run_dir) / metrics)
    lines = ["## Evaluation metrics", ""]
    if evaluation is None:
        return "\n".join(lines + [f"{NOT_RUN} (no {metrics})."])
    for key, res in evaluation.get("evaluators", {}).items():
        comp = res.get("component", {})
        lines += [f"### {key} ({comp.get('distribution')} {comp.get('version')})", ""]
        if "splits" in res:
            for split in ("test", *(s for s in res["splits"] if s != "test")):
                if split in res["splits"]:
                    lines += [f"**{split} split**", ""] + split_summary(res["splits"][split])
            lines += [f"![{fig}]({EVALUATE_DIR}/{fig})" for fig in res.get("figures", [])] + [""]
        else:
            lines += [f"- {k}: {fmt(v)}" for k, v in (res.get("headline") or {}).items()] + [""]
    return "\n".join(lines)
