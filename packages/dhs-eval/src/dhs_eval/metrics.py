"""Classification metrics for lens finders: the operating regime first.

Lens searches run at false-positive rates of 1e-3 to 1e-4, where every false positive costs
human follow-up, so a headline AUC can hide a finder that recovers almost nothing at the FPR
that matters. Besides ROC AUC this module gives the McClish-standardised partial AUC, TPR at a
fixed FPR and FPR at a fixed TPR (each with the threshold that achieves it), the two operating-
point tables the field reports, calibration errors, DeLong statistics and intervals.

Conventions (shared with scikit-learn, which computes the ROC here):

* a cutout is called a lens when ``score >= threshold``;
* NaN scores are excluded and counted (``nan_policy="omit"`` warns with
  :class:`~dhs_eval.errors.NaNScoresWarning`; ``"raise"`` refuses them);
* a metric that needs both classes returns NaN — "not defined" — when one class is absent;
  :func:`undefined_reason` says why, and reports print "not defined" rather than a number;
* an operating point whose target FPR is below 1/n_negatives cannot be resolved by the sample
  (the smallest non-zero FPR it can measure is 1/n_negatives): it is NaN with that reason.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from dhs_eval._inputs import Scored, as_probabilities, scored
from dhs_eval.delong import auc_standard_error, delong_test
from dhs_eval.errors import MetricInputError
from dhs_eval.intervals import binomial_interval, bootstrap_ci
from dhs_eval.targets import FPR_TARGETS, TPR_TARGETS

__all__ = [
    "FPR_TARGETS", "TPR_TARGETS", "OperatingPoint", "auc_standard_error", "binomial_interval",
    "bootstrap_ci", "calibration_error", "delong_test", "fpr_at_tpr", "fpr_at_tpr_table", "partial_auc",
    "rates_at_threshold", "reliability", "roc_auc", "roc_points", "tpr_at_fpr", "tpr_at_fpr_table",
    "undefined_reason",
]


class OperatingPoint(NamedTuple):
    """A rate at an operating point and the score threshold (``score >= threshold``) achieving it."""

    value: float
    threshold: float


def undefined_reason(labels: object, scores: object) -> str | None:
    """Why a two-class metric is not defined for these labels and scores (None when it is)."""
    return scored(labels, scores, nan_policy="omit").undefined_reason()


def _roc(data: Scored) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fpr, tpr, thr = roc_curve(data.labels, data.scores, drop_intermediate=False)
    # scikit-learn puts +inf first ("nothing is called a lens"); a finite threshold just above
    # the highest score means the same and survives JSON.
    thr = thr.astype(np.float64)
    thr[~np.isfinite(thr)] = np.nextafter(data.scores.max(), np.inf)
    return fpr, tpr, thr


def roc_points(labels: object, scores: object, *, nan_policy: str = "omit") -> tuple[np.ndarray, ...]:
    """``(fpr, tpr, thresholds)`` at every distinct score; empty arrays when not defined."""
    data = scored(labels, scores, nan_policy=nan_policy)
    if data.undefined_reason():
        return np.array([]), np.array([]), np.array([])
    return _roc(data)


def roc_auc(labels: object, scores: object, *, nan_policy: str = "omit") -> float:
    """Area under the ROC curve (ties count one half); NaN when only one class is present."""
    data = scored(labels, scores, nan_policy=nan_policy)
    if data.undefined_reason():
        return math.nan
    return float(roc_auc_score(data.labels, data.scores))


def partial_auc(labels: object, scores: object, max_fpr: float, *, nan_policy: str = "omit") -> float:
    """McClish-standardised partial AUC over FPR <= ``max_fpr``, exactly as scikit-learn.

    The raw area A over [0, max_fpr] is mapped to 0.5 + (A - min)/(max - min)/2, where min is the
    area under the chance diagonal and max = max_fpr, so 0.5 is chance and 1 is perfect.
    """
    if not (isinstance(max_fpr, (int, float)) and 0 < max_fpr <= 1):
        raise MetricInputError(f"max_fpr={max_fpr!r}; it must be a false-positive rate in (0, 1], e.g. 1e-3")
    data = scored(labels, scores, nan_policy=nan_policy)
    if data.undefined_reason():
        return math.nan
    return float(roc_auc_score(data.labels, data.scores, max_fpr=max_fpr))


def _check_rate(value: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise MetricInputError(f"target {what}={value!r}; it must be a rate in (0, 1]")


def _tpr_at_fpr(data: Scored, target_fpr: float) -> tuple[OperatingPoint, float, str]:
    if (reason := data.undefined_reason()) is not None:
        return OperatingPoint(math.nan, math.nan), math.nan, reason
    if target_fpr < 1.0 / data.n_neg:
        return OperatingPoint(math.nan, math.nan), math.nan, (
            f"not resolvable: target FPR {target_fpr:g} < 1/n_negatives = 1/{data.n_neg:,}"
        )
    fpr, tpr, thr = _roc(data)
    i = int(np.searchsorted(fpr, target_fpr, side="right")) - 1  # last point with FPR <= target
    return OperatingPoint(float(tpr[i]), float(thr[i])), float(fpr[i]), "ok"


def _fpr_at_tpr(data: Scored, target_tpr: float) -> tuple[OperatingPoint, float, str]:
    if (reason := data.undefined_reason()) is not None:
        return OperatingPoint(math.nan, math.nan), math.nan, reason
    fpr, tpr, thr = _roc(data)
    i = int(np.searchsorted(tpr, target_tpr - 1e-12, side="left"))  # first point with TPR >= target
    return OperatingPoint(float(fpr[i]), float(thr[i])), float(tpr[i]), "ok"


def tpr_at_fpr(labels: object, scores: object, target_fpr: float, *, nan_policy: str = "omit") -> OperatingPoint:
    """Highest TPR with FPR <= ``target_fpr``, and its threshold; NaN when not defined/resolvable."""
    _check_rate(target_fpr, "FPR")
    return _tpr_at_fpr(scored(labels, scores, nan_policy=nan_policy), target_fpr)[0]


def fpr_at_tpr(labels: object, scores: object, target_tpr: float, *, nan_policy: str = "omit") -> OperatingPoint:
    """Lowest FPR with TPR >= ``target_tpr``, and its threshold; NaN when not defined."""
    _check_rate(target_tpr, "TPR")
    return _fpr_at_tpr(scored(labels, scores, nan_policy=nan_policy), target_tpr)[0]


def tpr_at_fpr_table(
    labels: object, scores: object, fprs: tuple[float, ...] = FPR_TARGETS, *, level: float = 0.95,
    method: str = "jeffreys", nan_policy: str = "omit",
) -> list[dict[str, object]]:
    """One row per target FPR: TPR (with a binomial interval on the positives), threshold, achieved FPR."""
    data = scored(labels, scores, nan_policy=nan_policy)
    rows = []
    for target in fprs:
        _check_rate(target, "FPR")
        point, achieved, status = _tpr_at_fpr(data, target)
        k = int(round(point.value * data.n_pos)) if status == "ok" else None
        low, high = binomial_interval(k, data.n_pos, level=level, method=method) if status == "ok" else (None, None)
        rows.append({"target_fpr": target, "tpr": point.value, "tpr_low": low, "tpr_high": high,
                     "n_detected": k, "n_positives": data.n_pos, "threshold": point.threshold,
                     "achieved_fpr": achieved, "n_negatives": data.n_neg, "status": status})
    return rows


def fpr_at_tpr_table(
    labels: object, scores: object, tprs: tuple[float, ...] = TPR_TARGETS, *, level: float = 0.95,
    method: str = "jeffreys", nan_policy: str = "omit",
) -> list[dict[str, object]]:
    """One row per target TPR: FPR (with a binomial interval on the negatives), threshold, achieved TPR."""
    data = scored(labels, scores, nan_policy=nan_policy)
    rows = []
    for target in tprs:
        _check_rate(target, "TPR")
        point, achieved, status = _fpr_at_tpr(data, target)
        k = int(round(point.value * data.n_neg)) if status == "ok" else None
        low, high = binomial_interval(k, data.n_neg, level=level, method=method) if status == "ok" else (None, None)
        rows.append({"target_tpr": target, "fpr": point.value, "fpr_low": low, "fpr_high": high,
                     "n_false_positive": k, "n_negatives": data.n_neg, "threshold": point.threshold,
                     "achieved_tpr": achieved, "n_positives": data.n_pos, "status": status})
    return rows


def rates_at_threshold(labels: object, scores: object, threshold: float, *, nan_policy: str = "omit") -> dict:
    """Confusion counts, precision, recall (TPR) and FPR when ``score >= threshold`` is called a lens.

    A rate whose denominator is zero is NaN (precision with no cutout above threshold, recall
    without positives, FPR without negatives).
    """
    data = scored(labels, scores, nan_policy=nan_policy)
    called = data.scores >= threshold
    tp = int(np.sum(called & (data.labels == 1)))
    fp = int(np.sum(called & (data.labels == 0)))
    fn, tn = data.n_pos - tp, data.n_neg - fp

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n_nan": data.n_nan,
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "fpr": ratio(fp, fp + tn)}


def reliability(labels: object, probs: object, n_bins: int = 15, *, logits: bool = False,
                nan_policy: str = "omit") -> dict[str, np.ndarray]:
    """Per equal-width probability bin: count, mean predicted probability, observed lens fraction.

    Bin b holds b/n_bins <= p < (b+1)/n_bins; p = 1 falls in the last bin. Empty bins have NaN means.
    """
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise MetricInputError(f"n_bins={n_bins!r}; it must be a positive integer (15 is usual)")
    data = scored(labels, probs, nan_policy=nan_policy, where="probs")
    p = as_probabilities(data.scores, logits=logits)
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=data.labels.astype(np.float64), minlength=n_bins) / count
    return {"edges": np.linspace(0, 1, n_bins + 1), "count": count, "mean_prob": mean_prob, "frac_pos": frac_pos}


def calibration_error(
    labels: object, probs: object, n_bins: int = 15, *, logits: bool = False,
    require_both_classes: bool = True, nan_policy: str = "omit",
) -> tuple[float, float]:
    """Expected and maximum calibration error ``(ece, mce)`` over ``n_bins`` equal-width bins.

    ECE = sum_b (n_b/N) |frac_pos_b - mean_prob_b|; MCE = max_b of the same gap over non-empty
    bins. Probabilities outside [0, 1] are an error unless ``logits=True``. On one class the
    pair is NaN ("not defined") unless ``require_both_classes=False`` (e.g. ECE of the positives).
    """
    data = scored(labels, probs, nan_policy=nan_policy, where="probs")
    reason = data.undefined_reason()
    if data.labels.size == 0 or (require_both_classes and reason):
        as_probabilities(data.scores, logits=logits)  # still refuse out-of-range input
        return math.nan, math.nan
    bins = reliability(data.labels, data.scores, n_bins, logits=logits)
    full = bins["count"] > 0
    gap = np.abs(bins["frac_pos"][full] - bins["mean_prob"][full])
    return float(np.sum(bins["count"][full] * gap) / data.labels.size), float(gap.max())
