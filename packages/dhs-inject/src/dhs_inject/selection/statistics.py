"""Selection-function statistics: completeness posteriors and the detection threshold (pure functions).

Completeness of a cell with ``k`` of ``n`` validly scored injections detected is summarised by
the Jeffreys posterior Beta(k + 1/2, n - k + 1/2): its median and central 68 % / 95 % intervals.
Unlike k/n with a Wald error it stays inside [0, 1] and is honest for cells with few injections
or completeness near 0 or 1. A cell with n = 0 has no completeness (NaN), never 0.

These follow the same conventions as ``dhs_eval.selection`` (score >= threshold is a detection;
thresholds from validly scored negatives only) without importing it: dhs-inject may not depend
on dhs-eval (DESIGN.md §1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

#: (column suffix, lower quantile, upper quantile) of the reported central intervals
INTERVALS = (("68", 0.16, 0.84), ("95", 0.025, 0.975))


def completeness_posterior(n_detected: Any, n_ok: Any) -> dict[str, np.ndarray]:
    """Posterior median ``completeness`` and ``completeness_low_68/high_68/low_95/high_95``, batched.

    ``n_detected`` and ``n_ok`` are integer arrays of the same shape with 0 <= k <= n.
    """
    k = np.asarray(n_detected, dtype=np.float64)
    n = np.asarray(n_ok, dtype=np.float64)
    if k.shape != n.shape:
        raise ValueError(f"n_detected shape {k.shape} differs from n_ok shape {n.shape}")
    if np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)) or np.any(n != np.round(n)):
        raise ValueError("counts must be integers with 0 <= n_detected <= n_ok")
    empty = n == 0
    a, b = k + 0.5, np.where(empty, 1.0, n - k + 0.5)
    out = {"completeness": stats.beta.ppf(0.5, a, b)}
    for tag, lo, hi in INTERVALS:
        out[f"completeness_low_{tag}"] = stats.beta.ppf(lo, a, b)
        out[f"completeness_high_{tag}"] = stats.beta.ppf(hi, a, b)
    return {key: np.where(empty, np.nan, val) for key, val in out.items()}


@dataclass(frozen=True)
class Threshold:
    """The detection threshold and, when it came from a target FPR, what it achieves."""

    threshold: float  # a lens is called when score >= threshold
    source: str  # "target_fpr" or "fixed"
    target_fpr: float | None
    achieved_fpr: float | None  # n_false_positive / n_valid on the threshold split's negatives
    n_false_positive: int | None
    n_valid: int | None  # negatives with a finite score
    n_invalid: int | None  # negatives without a valid score (excluded, not counted as passing)
    resolvable: bool | None  # False when target_fpr < 1 / n_valid
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixed_threshold(threshold: float) -> Threshold:
    return Threshold(float(threshold), "fixed", None, None, None, None, None, None, "ok")


def threshold_at_fpr(negative_scores: Any, target_fpr: float) -> Threshold:
    """Lowest threshold whose FPR on the validly scored negatives does not exceed ``target_fpr``.

    With ``m = floor(target_fpr * n_valid)`` false positives allowed, the threshold sits just
    above the (m+1)-th highest negative score (ties there are all excluded, so the achieved FPR
    can fall below the target). When ``target_fpr < 1/n_valid`` no false positive is allowed:
    the threshold is just above the highest negative and the target is not resolvable.
    """
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr={target_fpr!r}; it must be a rate in (0, 1)")
    scores = np.asarray(negative_scores, dtype=np.float64).ravel()
    valid = scores[np.isfinite(scores)]
    n_valid, n_invalid = int(valid.size), int(scores.size - valid.size)
    if n_valid == 0:
        return Threshold(math.nan, "target_fpr", float(target_fpr), math.nan, 0, 0, n_invalid, False,
                         "not defined: no validly scored negatives")
    allowed = int(math.floor(target_fpr * n_valid + 1e-9))
    desc = np.sort(valid)[::-1]
    threshold = float(desc[-1]) if allowed >= n_valid else float(np.nextafter(desc[allowed], np.inf))
    n_fp = int(np.sum(valid >= threshold))
    resolvable = target_fpr >= 1.0 / n_valid
    status = "ok" if resolvable else (f"not resolvable: target FPR {target_fpr:g} < 1/n_valid = 1/{n_valid:,}; "
                                      "the threshold is above every negative")
    return Threshold(threshold, "target_fpr", float(target_fpr), n_fp / n_valid, n_fp, n_valid, n_invalid,
                     resolvable, status)


def bin_index(values: Any, edges: Any) -> np.ndarray:
    """Bin of each value for increasing ``edges``: lo <= v < hi, the last bin closed; -1 outside."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right") - 1
    idx = np.where(v == e[-1], len(e) - 2, idx)
    return np.where(np.isfinite(v) & (idx >= 0) & (idx <= len(e) - 2), idx, -1)
