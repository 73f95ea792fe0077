"""The evaluate stage's section of MODEL_CARD.md, in the published template's evaluation fields.

One ``| metric | test | val |`` table (AUC and pAUC with bootstrap intervals, Tier-A recall at
p > 0.3 and p > 0.5 with binomial intervals, Tier-A AUC, TPR at the smallest resolvable FPR,
calibration), one table of the FPR per N2 confuser category, the shortcut gates, and the strata
that are defined — empty strata are summarised in one line and every stratum is in the linked
``report/strata.csv``. Each number is one a reader of a lens-finder paper looks for: the operating
regime of a finder is FPR 1e-3…1e-4, so rates carry their k/n and interval (docs/eval.md).

Also :func:`strata_rows` (all strata as flat rows, for the CSV the report writes) and
:func:`tier_a` (Tier-A metrics from predictions.parquet, through the ``tier_a`` evaluator's computation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhs_core.cards import NOT_RUN, fmt, load_json
from dhs_eval.layout import EVALUATE_ARTIFACTS, EVALUATE_DIR, REPORT_DIR, STRATA_CSV
from dhs_eval.targets import TIER_A_THRESHOLDS

#: strata groups the card prints (test split, defined strata only); all of them go to strata.csv
CARD_STRATA = (("recall_by_tier", "Recall by tier"), ("fpr_by_pool", "FPR by negative pool"),
               ("fpr_by_confuser_category", "FPR by N2 confuser category"), ("by_theta_e", "Recall by θE bin"))


def _ci(low: Any, high: Any) -> str:
    return f" [{fmt(low)}, {fmt(high)}]" if low is not None and high is not None else ""


def strata_rows(evaluation: dict) -> list[dict[str, Any]]:
    """Every stratum of every split of every evaluator as a flat row (evaluator, split, group,
    metric, stratum, k, n, estimate, low, high, threshold)."""
    out = []
    for key, res in (evaluation.get("evaluators") or {}).items():
        for split, s in (res.get("splits") or {}).items():
            for group, val in ((s or {}).get("strata") or {}).items():
                items = val if isinstance(val, list) else [*val.get("recall", []), *val.get("fpr", [])]
                for p in items:
                    out.append({"evaluator": key, "split": split, "group": group, "metric": p.get("metric"),
                                "stratum": p.get("stratum"), "k": p.get("k"), "n": p.get("n"),
                                "estimate": p.get("estimate"), "low": p.get("low"), "high": p.get("high"),
                                "threshold": p.get("threshold")})
    return out


def tier_a(run_dir: Path, split: str) -> dict[str, Any] | None:
    """Tier-A metrics of ``split`` from predictions.parquet, computed by the ``tier_a`` evaluator's
    :func:`~dhs_eval.evaluators.tier_a.tier_a_metrics` at the protocol thresholds (no bootstrap);
    None without predictions or their tier column."""
    path = Path(run_dir) / EVALUATE_ARTIFACTS["predictions"]
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    from dhs_eval.evaluators.tier_a import split_arrays, tier_a_metrics

    t = pq.read_table(path)
    if not {"split", "label", "tier", "score"} <= set(t.column_names):
        return None
    return tier_a_metrics(*split_arrays(t, split), thresholds=TIER_A_THRESHOLDS)


def _rate(k: int, n: int, lo: Any, hi: Any) -> str:
    return f"{fmt(k / n)} ({k}/{n}){_ci(lo, hi)}" if n else "not defined (0/0)"


def _split_column(run_dir: Path, split: str, res: dict) -> dict[str, str]:
    """The evaluation fields of one split (column of the metrics table)."""
    if res.get("status") != "ok":
        return {"status": str(res.get("status"))}
    boot = res.get("auc_bootstrap") or {}
    col = {"Cutouts (positives / negatives)": f"{res['n']:,} ({res['n_positives']:,} / {res['n_negatives']:,})",
           "ROC AUC [95 % bootstrap CI]": fmt(res["auc"]) + _ci(boot.get("low"), boot.get("high"))}
    pauc = res.get("pauc") or {}
    if pauc:
        col[f"pAUC (FPR ≤ {' / '.join(pauc)}) [95 % CI]"] = " / ".join(
            fmt(p.get("value")) + _ci((p.get("bootstrap") or {}).get("low"), (p.get("bootstrap") or {}).get("high"))
            for p in pauc.values())
    ta = tier_a(run_dir, split)
    for i, t_ in enumerate(TIER_A_THRESHOLDS):
        row = ta["recall"][i] if ta else None
        col[f"Tier-A recall @{t_:g}"] = _rate(row["k"], row["n"], row["low"], row["high"]) if row else NOT_RUN
    col["Tier-A AUC (vs all negatives)"] = fmt(ta["auc"]) if ta and ta["status"] == "ok" else (
        "not defined (no Tier-A positives or no negatives)" if ta else NOT_RUN)
    resolved = [r for r in res.get("tpr_at_fpr", []) if r.get("status") == "ok"]
    if resolved:
        r = min(resolved, key=lambda r: r["target_fpr"])
        col["TPR @ smallest resolvable FPR"] = (f"{fmt(r['tpr'])} ({r['n_detected']}/{r['n_positives']}) "
                                                f"at FPR {r['target_fpr']:g}{_ci(r['tpr_low'], r['tpr_high'])}")
    else:
        col["TPR @ smallest resolvable FPR"] = "not resolvable (too few negatives)"
    cal = res.get("calibration") or {}
    col["ECE / MCE"] = f"{fmt(cal.get('ece'))} / {fmt(cal.get('mce'))} ({cal.get('n_bins')} bins)"
    at = res.get("at_threshold") or {}
    col[f"FPR @{at.get('threshold')} (all negatives)"] = (f"{fmt(at.get('fpr'))} ({at.get('fp')}/"
                                                          f"{(at.get('fp') or 0) + (at.get('tn') or 0)})")
    return col


def _classification(run_dir: Path, key: str, res: dict, gates: str) -> list[str]:
    comp = res.get("component", {})
    splits = res.get("splits") or {}
    order = [s for s in ("test", "val") if s in splits] + [s for s in splits if s not in ("test", "val")]
    cols = {s: _split_column(run_dir, s, splits[s]) for s in order}
    fields = list(dict.fromkeys(f for c in cols.values() for f in c))
    lines = [f"### {key} ({comp.get('distribution')} {comp.get('version')})", "",
             "| metric | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    lines += [f"| {f} | " + " | ".join(cols[s].get(f, "") or "—" for s in order) + " |" for f in fields]
    lines.append("| Shortcut gates (core-only AUC) | " + " | ".join([gates] + ["—"] * (len(order) - 1)) + " |")
    # strata: the test split's tier recall, FPR per pool and per N2 confuser category (the hard
    # negatives a finder must not call lenses) and θE recall, one row per group, defined strata
    # only; the val split and the PSF / depth strata are in the CSV, empty strata counted
    test = (splits.get("test") or {}).get("strata") or {}
    rows, empty = [], []
    for s in order:
        for val in ((splits[s] or {}).get("strata") or {}).values():
            items = val if isinstance(val, list) else [*val.get("recall", []), *val.get("fpr", [])]
            empty += [p for p in items if not p.get("n")]
    for group, title in CARD_STRATA:
        val = test.get(group)
        items = (val if isinstance(val, list) else (val or {}).get("recall", [])) if val is not None else []
        shown = [p for p in items if p.get("n")]
        text = "; ".join(f"{p['stratum']}: {fmt(p['estimate'])} ({p['k']}/{p['n']}){_ci(p['low'], p['high'])}"
                         for p in shown)
        rows.append((f"{title} @{shown[0].get('threshold') if shown else '—'}",
                     text or f"{NOT_RUN} (no test cutouts in these strata)"))
    lines += ["", "| test-split strata | value (k/n) [95 %] per stratum |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    csv = f"{REPORT_DIR}/{STRATA_CSV}"
    lines += ["", f"Strata with no cutouts (not defined, both splits): {len(empty)}"
              + (f" ({', '.join(sorted({p['metric'] + ' ' + str(p['stratum']) for p in empty})[:6])}"
                 f"{', …' if len(empty) > 6 else ''})" if empty else "")
              + (f". Every stratum: [{csv}]({csv})." if (run_dir / csv).is_file() else ".")]
    figs = res.get("figures") or []
    if figs:
        lines += ["", "Figures: " + ", ".join(f"[{f}]({EVALUATE_DIR}/{f})" for f in figs)]
    return lines


def section(run_dir: Path) -> str:
    """``## Evaluation metrics``: each evaluator with its provider; the ``classification`` ones as
    the template's tables, others as their headline numbers; then the shortcut gates."""
    run_dir = Path(run_dir)
    metrics = EVALUATE_ARTIFACTS["metrics"]
    evaluation, problem = load_json(run_dir / metrics)
    lines = ["## Evaluation metrics", ""]
    if evaluation is None:
        return "\n".join(lines + [f"{problem} ({metrics})."])
    if not isinstance(evaluation, dict):
        return "\n".join(lines + [f"unreadable: {metrics} is not a JSON object."])
    gates = _gates(evaluation)
    for key, res in (evaluation.get("evaluators") or {}).items():
        if "splits" in res:
            lines += _classification(run_dir, key, res, gates) + [""]
        else:
            lines += _evaluator(key, res) + [""]
    return "\n".join(lines).rstrip("\n")


def _cell(value: Any) -> str:
    return fmt(value) if isinstance(value, float) else ("—" if value is None else str(value))


def _evaluator(key: str, res: dict) -> list[str]:
    """Any other evaluator: its own tables (a ``"card"`` entry, see below) or else its headline
    numbers, then its notes and figures.

    An evaluator that wants more than its headline in the card returns
    ``"card": {"tables": [{"title": str, "columns": [str, ...], "rows": [[value, ...], ...]}],
    "notes": [str, ...]}``; floats are formatted as everywhere in the card, strings kept as given
    (so a rate can carry its k/n and interval).
    """
    comp = res.get("component", {})
    lines = [f"### {key} ({comp.get('distribution')} {comp.get('version')})", ""]
    card = res.get("card") if isinstance(res.get("card"), dict) else {}
    tables = [t for t in (card.get("tables") or []) if isinstance(t, dict) and t.get("columns")]
    for table in tables:
        cols = [str(c) for c in table["columns"]]
        if table.get("title"):
            lines += [f"**{table['title']}**", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        rows = table.get("rows") or []
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        if not rows:
            lines.append("| " + " | ".join(["(no rows)"] + [""] * (len(cols) - 1)) + " |")
        lines.append("")
    if not tables:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in (res.get("headline") or {}).items()] or ["| (none) | |"]
        lines.append("")
    lines += [str(n) for n in (card.get("notes") or [])]
    figs = res.get("figures") or []
    if figs:
        lines += ["", "Figures: " + ", ".join(f"[{f}]({EVALUATE_DIR}/{f})" for f in figs)]
    return [*lines]


def _gates(evaluation: dict) -> str:
    """Shortcut gates (e.g. the core-only AUC: a finder that scores well on the lens galaxy's core
    alone learned a shortcut) reported by any evaluator, as one line."""
    gates = [f"{k} = {fmt(v) if not isinstance(v, dict) else v.get('status', v)} ({key})"
             for key, res in (evaluation.get("evaluators") or {}).items() for k, v in (res.get("gates") or {}).items()]
    return "; ".join(gates) or f"{NOT_RUN} (no evaluator in this run reports a core-only AUC or other gate)"
