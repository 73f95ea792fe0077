"""What the ``preprocessing_mismatch`` evaluator shows: its headline, its model-card section (the
``"card"`` entry that :func:`dhs_eval.card._evaluator` renders) and its ROC figure.

The card has one table — each metric under the training and under the mismatched preprocessing and
their difference — and notes naming both preprocessors, the paired DeLong test, the published rule's
verdict and the published Q2.4 numbers to compare with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dhs_eval.evaluators.tier_a import rate_text, threshold_key

#: the published Q2.4 result, quoted for comparison (docs/inject.md)
PUBLISHED = ("Published for comparison (Q2.4: a model trained with raw_robust annulus [20, 32] scored with "
             "[32.5, 45], 500 lenses and 500 non-lenses): recall p>0.3 74.0 → 70.4 %, p>0.5 69.8 → 66.0 %, "
             "p>0.7 64.2 → 61.6 %; FPR 0.20 % under both; median lens score 0.943 → 0.901.")


def headline(result: dict[str, Any]) -> dict[str, float]:
    """``delta_auc``, ``delta_recall@p>t`` per threshold and ``auc_mismatched_preprocess``, where defined."""
    out = {"delta_auc": result["delta_auc"], "auc_mismatched_preprocess": result["auc_mismatched_preprocess"]}
    for row in result["thresholds"]:
        out[f"delta_recall@{threshold_key(row['threshold'])}"] = row["delta_recall"]
    return {k: float(v) for k, v in out.items() if isinstance(v, float) and math.isfinite(v)}


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "not defined"


def _delta(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else "not defined"


def describe(section: dict[str, Any] | None) -> str:
    """``raw_robust (annulus [20.0, 32.0], clip 10.0, eps 1e-06)``: a preprocessor and its set options."""
    if not section:
        return "none (raw cutouts)"
    options = ", ".join(f"{k} {v}" for k, v in section.items() if k != "name" and v is not None)
    return f"{section.get('name')} ({options})" if options else str(section.get("name"))


def card(result: dict[str, Any]) -> dict[str, Any]:
    """The model-card tables and notes of one evaluation."""
    rows = []
    auc = [f"{_fmt(result[f'auc_{k}'])} (DeLong SE {_fmt(result[f'auc_se_{k}'])})"
           for k in ("training_preprocess", "mismatched_preprocess")]
    rows.append(["ROC AUC", *auc, _delta(result["delta_auc"])])
    for row in result["thresholds"]:
        tag = threshold_key(row["threshold"])
        rows.append([f"recall @{tag} [95 % Jeffreys]", rate_text(row["recall_training_preprocess"]),
                     rate_text(row["recall_mismatched_preprocess"]), _delta(row["delta_recall"])])
        rows.append([f"FPR @{tag} [95 % Jeffreys]", rate_text(row["fpr_training_preprocess"]),
                     rate_text(row["fpr_mismatched_preprocess"]), _delta(row["delta_fpr"])])
    med = [result[f"median_positive_score_{k}"] for k in ("training_preprocess", "mismatched_preprocess")]
    rows.append(["median lens score", _fmt(med[0]), _fmt(med[1]), _delta(med[1] - med[0])])
    notes = [
        f"Training preprocessing: {describe(result['training_preprocess'])}; mismatched preprocessing: "
        f"{describe(result['mismatched_preprocess'])}.",
        f"Paired on the same {result['n_paired']:,} held-out cutouts ({result['n_positives']:,} lenses, "
        f"{result['n_negatives']:,} non-lenses) of split(s) {', '.join(result['counts']['splits'])}; NaN scores "
        f"excluded: {result['n_nan_training_preprocess']} (training), {result['n_nan_mismatched_preprocess']} "
        "(mismatched preprocessing).",
        f"Paired DeLong test of the AUCs: z = {_fmt(result['delong_z'], 3)}, p = "
        + (f"{result['delong_p']:.3g}" if math.isfinite(result["delong_p"]) else "not defined") + ".",
        f"Rule (AUC drop > {result['auc_drop_rule']:g} ⇒ the preprocessing choice matters): {result['verdict']}.",
        PUBLISHED,
    ]
    return {"tables": [{"title": "Training vs mismatched preprocessing (same cutouts; detected: score > t)",
                        "columns": ["metric", "training preprocessing", "mismatched preprocessing",
                                    "Δ (mismatched − training)"],
                        "rows": rows}],
            "notes": notes}


def figure(path: Path, label: np.ndarray, scores: dict[str, np.ndarray], result: dict[str, Any]) -> None:
    """ROC curves of both scorings (log-FPR axis) with their operating points at the thresholds."""
    from dhs_eval.metrics import roc_points
    from dhs_eval.plots import roc_figure

    curves, points = [], []
    both = np.isfinite(scores["training_preprocess"]) & np.isfinite(scores["mismatched_preprocess"])
    for key, name in (("training_preprocess", "training preprocessing"),
                      ("mismatched_preprocess", "mismatched preprocessing")):
        fpr, tpr, _ = roc_points(label[both], scores[key][both])
        curves.append((f"{name} (AUC {result[f'auc_{key}']:.4f})", fpr, tpr, result["n_negatives"]))
        for row in result["thresholds"]:
            rec, fp = row[f"recall_{key}"], row[f"fpr_{key}"]
            points.append((f"{name} p>{row['threshold']:g}", fp["estimate"], rec["estimate"]))
    roc_figure(path, curves, points, title=f"training vs mismatched preprocessing: ΔAUC {result['delta_auc']:+.4f}")
