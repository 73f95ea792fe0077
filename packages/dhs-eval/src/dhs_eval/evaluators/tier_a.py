"""The ``tier_a`` evaluator: how well the finder recovers the confident lenses.

Tier-A lenses are the confirmed ones (spectroscopic or HST / multiply imaged); Tier-B carry visual
grades only and about one in ten is not a lens (docs/eval.md). A finder's recall on Tier-A is
therefore the least label-noise-limited measure of its completeness on real lenses, and the
published protocol reports it at p > 0.3 and p > 0.5 with 95 % binomial intervals, next to the
AUC of Tier-A positives against all negatives of the split.

Per split (test first): Tier-A positives (label 1, tier "A") against every negative (label 0) of
the split, NaN scores (failed evaluations) excluded and counted; the AUC with its DeLong standard
error, the normal interval built on it and a stratified percentile bootstrap interval; recall of
the Tier-A positives and FPR of the negatives at each threshold as k/n with a Jeffreys interval.
A cutout is detected when ``score > t``, as "p > 0.3" is published (strict, unlike the ROC's
``score >= t``). A split without Tier-A positives or without negatives reports "not defined"
rather than a number; predictions without a ``tier`` column are skipped.

:func:`tier_a_metrics` is the computation; the ``classification`` table of the model card
(:func:`dhs_eval.card.tier_a`) calls it too, so the two never disagree. Figure: ``tier_a.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dhs_eval._inputs import as_labels, as_scores
from dhs_eval.evaluators.base import EvaluationContext, check_columns, column
from dhs_eval.evaluators.config import TierAConfig
from dhs_eval.targets import TIER_A_THRESHOLDS

FIGURE = "tier_a.png"


def threshold_key(threshold: float) -> str:
    """``p>0.3``: the name of a detection threshold in metric keys, as the published protocol writes it."""
    return f"p>{threshold:g}"


def rate_above(scores: np.ndarray, threshold: float, *, level: float = 0.95) -> dict[str, Any]:
    """Fraction of finite ``scores`` above ``threshold`` (``score > t``): k/n with a Jeffreys interval;
    "not defined" (estimate NaN, no interval) when n = 0."""
    from dhs_eval.intervals import binomial_interval  # scipy: loaded on use, as in intervals.py

    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    k, n = int(np.sum(s > threshold)), int(s.size)
    if n == 0:
        return {"threshold": float(threshold), "k": 0, "n": 0, "estimate": math.nan, "low": None, "high": None,
                "status": "not defined: no scored cutouts"}
    low, high = binomial_interval(k, n, level=level, method="jeffreys")
    return {"threshold": float(threshold), "k": k, "n": n, "estimate": k / n, "low": float(low),
            "high": float(high), "status": "ok"}


def tier_a_metrics(labels: object, tiers: object, scores: object, *,
                   thresholds: tuple[float, ...] = TIER_A_THRESHOLDS, n_bootstrap: int = 0,
                   level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Tier-A positives against all negatives of one split (see the module docstring).

    ``tiers`` holds "A", "B" or None per cutout; ``n_bootstrap`` = 0 skips the bootstrap interval.
    """
    from scipy import stats

    from dhs_eval import metrics
    from dhs_eval._fastroc import fast_auc

    y = as_labels(labels)
    s = as_scores(scores, y.size)
    tier = np.asarray(tiers, dtype=object)
    if tier.shape != y.shape:
        raise ValueError(f"tiers has {tier.size} values but labels has {y.size}; they must match")
    finite = ~np.isnan(s)
    is_a, is_neg = (y == 1) & (tier == "A"), y == 0
    pos, neg = is_a & finite, is_neg & finite
    out: dict[str, Any] = {"n_tier_a": int(pos.sum()), "n_negatives": int(neg.sum()),
                           "n_nan_scores": {"tier_a": int((is_a & ~finite).sum()),
                                            "negatives": int((is_neg & ~finite).sum())}}
    missing = [what for what, sel in (("no Tier-A positives", pos), ("no negatives", neg)) if not sel.any()]
    out["status"] = ("not defined: " + " and ".join(missing) + " with a finite score") if missing else "ok"
    both = pos | neg
    yb, sb = y[both], s[both]
    out["auc"] = metrics.roc_auc(yb, sb) if not missing else math.nan
    out["auc_se_delong"] = metrics.auc_standard_error(yb, sb) if not missing else math.nan
    interval = None
    if math.isfinite(out["auc_se_delong"]):
        # normal interval on DeLong's variance, clipped to the AUC's range
        z = float(stats.norm.ppf(0.5 + level / 2))
        interval = [max(0.0, out["auc"] - z * out["auc_se_delong"]), min(1.0, out["auc"] + z * out["auc_se_delong"])]
    out["auc_delong_interval"] = interval
    out["auc_bootstrap"] = None
    if n_bootstrap and not missing:
        # stratified by class: every resample keeps the split's numbers of Tier-A lenses and negatives
        out["auc_bootstrap"] = metrics.bootstrap_ci(fast_auc, yb, sb, n_resamples=n_bootstrap, level=level,
                                                    seed=seed, strata=yb).as_dict()
    out["level"] = level
    out["recall"] = [_named(rate_above(s[pos], t, level=level), "Tier-A positives") for t in thresholds]
    out["fpr"] = [_named(rate_above(s[neg], t, level=level), "negatives") for t in thresholds]
    return out


def _named(rate: dict[str, Any], group: str) -> dict[str, Any]:
    if rate["status"] != "ok":
        rate["status"] = f"not defined: no {group} with a finite score"
    return rate


def split_arrays(predictions: pa.Table, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, tiers, scores) of the rows of ``split`` in a predictions table that has a tier column."""
    mask = pa.array(column(predictions, "split").astype(str) == split)
    table = predictions.filter(mask)
    return (column(table, "label").astype(np.int64), np.asarray(table.column("tier").to_pylist(), dtype=object),
            column(table, "score").astype(np.float64))


class TierAEvaluator:
    """Tier-A recall at p > 0.3 / 0.5 and Tier-A AUC against all negatives, with 95 % intervals."""

    name = "tier_a"

    def __init__(self, config: TierAConfig) -> None:
        self.config = config

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        cfg = self.config
        check_columns(predictions, self.name)
        result: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "per_split": {}, "figures": [],
                                  "headline": {}}
        if "tier" not in predictions.column_names:
            result["status"] = "skipped: the predictions have no 'tier' column (the manifest records no tiers)"
            result["card"] = {"notes": [result["status"] + "."]}
            return result
        result["status"] = "ok"
        arrays = {}
        for i, split in enumerate(cfg.splits):
            labels, tiers, scores = split_arrays(predictions, split)
            if labels.size == 0:
                result["per_split"][split] = {"status": f"not run: no cutouts in split {split!r}"}
                continue
            context.log(f"tier_a: {split} split, {int(((labels == 1) & (tiers == 'A')).sum())} Tier-A lenses")
            result["per_split"][split] = tier_a_metrics(labels, tiers, scores, thresholds=cfg.thresholds,
                                                        n_bootstrap=cfg.n_bootstrap, level=cfg.level,
                                                        seed=context.seed + 1000 * i)
            arrays[split] = (labels, tiers, scores)
        if cfg.plots and arrays:
            _figure(out_dir / FIGURE, arrays, result["per_split"])
            result["figures"].append(FIGURE)
        result["headline"] = _headline(result["per_split"])
        result["card"] = _card(result["per_split"], cfg.level)
        return result


def _headline(per_split: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for split, res in per_split.items():
        if math.isfinite(res.get("auc", math.nan)):
            out[f"{split}_auc"] = float(res["auc"])
        for row in res.get("recall", []):
            if row["status"] == "ok":
                out[f"{split}_recall@{threshold_key(row['threshold'])}"] = float(row["estimate"])
    return out


def rate_text(row: dict[str, Any]) -> str:
    """``0.6042 (29/48) [0.4580, 0.7500]``, or why the rate is not defined."""
    if row["status"] != "ok":
        return f"{row['status']} (0/0)"
    return f"{row['estimate']:.4f} ({row['k']}/{row['n']}) [{row['low']:.4f}, {row['high']:.4f}]"


def _bootstrap_text(boot: dict[str, Any] | None) -> str:
    if not boot:
        return "not run"
    if not (math.isfinite(boot["low"]) and math.isfinite(boot["high"])):
        return "not defined (every resample undefined)"
    return f"[{boot['low']:.4f}, {boot['high']:.4f}] ({boot['n_resamples']:,} resamples)"


def _card(per_split: dict[str, Any], level: float) -> dict[str, Any]:
    pct = f"{100 * level:g} %"
    rows = []
    thresholds = [r["threshold"] for res in per_split.values() for r in res.get("recall", [])]
    thresholds = list(dict.fromkeys(thresholds))
    for split, res in per_split.items():
        if "recall" not in res:
            rows.append([split, res["status"], *["—"] * (4 + 2 * len(thresholds))])
            continue
        boot, delong = res.get("auc_bootstrap"), res.get("auc_delong_interval")
        auc = (f"{res['auc']:.4f}" if math.isfinite(res["auc"]) else res["status"])
        rows.append([split, f"{res['n_tier_a']:,}", f"{res['n_negatives']:,}",
                     f"{sum(res['n_nan_scores'].values())}",
                     auc + (f" [{delong[0]:.4f}, {delong[1]:.4f}]" if delong else ""),
                     _bootstrap_text(boot),
                     *[rate_text(r) for r in res["recall"]], *[rate_text(r) for r in res["fpr"]]])
    columns = ["split", "Tier-A lenses", "negatives", "NaN scores (excluded)", f"AUC [{pct} DeLong]",
               f"AUC {pct} bootstrap", *[f"Tier-A recall @{threshold_key(t)} [{pct} Jeffreys]" for t in thresholds],
               *[f"FPR @{threshold_key(t)} [{pct} Jeffreys]" for t in thresholds]]
    return {"tables": [{"title": "Tier-A lenses against all negatives of the split (detected: score > t)",
                        "columns": columns, "rows": rows}],
            "notes": ["Tier-A = confirmed lenses (spectroscopic or HST / multiply imaged); recall k/n on them, "
                      "FPR k/n on every negative of the split."]}


def _figure(path: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
            per_split: dict[str, Any]) -> None:
    """Score histograms of Tier-A lenses and negatives per split (log counts: negatives outnumber
    the lenses by 10^2-10^3), the thresholds as lines, recall k/n at each written beside it."""
    from dhs_eval.plots import _figure as new_figure
    from dhs_eval.plots import save_figure

    fig = new_figure(figsize=(5.0 * len(arrays), 3.8))
    bins = np.linspace(0.0, 1.0, 41)
    for j, (split, (labels, tiers, scores)) in enumerate(arrays.items()):
        ax = fig.add_subplot(1, len(arrays), j + 1)
        finite = np.isfinite(scores)
        pos, neg = finite & (labels == 1) & (tiers == "A"), finite & (labels == 0)
        ax.hist(scores[neg], bins=bins, color="0.55", alpha=0.7, label=f"negatives (n={int(neg.sum()):,})")
        ax.hist(scores[pos], bins=bins, histtype="step", lw=1.8, color="C3",
                label=f"Tier-A lenses (n={int(pos.sum()):,})")
        for row in per_split[split]["recall"]:
            ax.axvline(row["threshold"], color="C0", ls="--", lw=1)
            text = (f"p>{row['threshold']:g}: recall {row['estimate']:.3f} ({row['k']}/{row['n']})"
                    if row["status"] == "ok" else f"p>{row['threshold']:g}: recall not defined")
            ax.text(row["threshold"], 0.98, text, transform=ax.get_xaxis_transform(), fontsize=7, rotation=90,
                    ha="right", va="top", color="C0")
        ax.set_yscale("log")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("score (sigmoid probability)")
        ax.set_ylabel("cutouts")
        auc = per_split[split]["auc"]
        ax.set_title(f"{split}: Tier-A AUC " + (f"{auc:.4f}" if math.isfinite(auc) else "not defined"), fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    save_figure(fig, path)
