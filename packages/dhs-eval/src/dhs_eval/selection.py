"""Selection-function statistics: completeness per grid cell, detection thresholds, marginals.

Injection-recovery gives, per cell of the (theta_E, PSF, depth, source magnitude) grid, the
number of injections scored validly (``n_ok``) and the number of those above the detection
threshold (``n_detected``). Completeness is reported as the Jeffreys posterior
Beta(k+1/2, n-k+1/2): its median (column ``completeness``) and central 68 % / 95 % intervals
(``completeness_low_68`` ... ``completeness_high_95``). Unlike k/n with a Wald error it stays
inside [0, 1] and is honest for cells with few injections or completeness near 0 or 1. A cell
with n = 0 has no completeness (NaN), never 0. The raw k/n is ``fraction_detected``.

The detection threshold comes from a target FPR on *validly scored* negatives only: a cutout that
failed to score is not a negative that passed, and counting it would lower the achieved FPR.
Because only whole false positives exist, the achieved FPR is reported next to the target.
A lens is called when ``score >= threshold``.

This module imports no scipy at import time (see :mod:`dhs_eval.intervals`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from dhs_eval.errors import MetricInputError
from dhs_eval.intervals import _counts, jeffreys_posterior

COUNT_COLUMNS = ("n_detected", "n_ok")
#: the axes of the selection-function grid, in the order marginal tables are reported
AXES = ("theta_e", "source_mag", "psfsize_r", "psfdepth_r")


def completeness_posterior(n_detected: object, n_ok: object) -> dict[str, np.ndarray]:
    """Posterior median ``completeness`` and ``completeness_low_68/high_68/low_95/high_95``, batched.

    ``n_detected`` and ``n_ok`` are counts of the same shape (or scalars) with 0 <= k <= n;
    NaN where ``n_ok`` = 0.
    """
    post = jeffreys_posterior(n_detected, n_ok)
    return {"completeness" if key == "median" else f"completeness_{key}": val for key, val in post.items()}


def fraction_detected(n_detected: object, n_ok: object) -> np.ndarray:
    """Raw k/n per cell (NaN where n = 0)."""
    k, n = _counts(n_detected, n_ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class Threshold:
    """The detection threshold and, when it came from a target FPR, what it achieves."""

    threshold: float  # a lens is called when score >= threshold
    source: str  # "target_fpr" or "fixed"
    target_fpr: float | None
    achieved_fpr: float | None  # n_false_positive / n_valid on the negatives it was chosen on
    n_false_positive: int | None
    n_valid: int | None  # negatives with a finite score
    n_invalid: int | None  # negatives without a valid score (excluded, not counted as passing)
    resolvable: bool | None  # False when target_fpr < 1 / n_valid
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixed_threshold(threshold: float) -> Threshold:
    """A threshold given by the user: nothing is measured about it."""
    return Threshold(float(threshold), "fixed", None, None, None, None, None, None, "ok")


def threshold_at_fpr(negative_scores: object, target_fpr: float) -> Threshold:
    """Lowest threshold whose FPR on the validly scored negatives does not exceed ``target_fpr``.

    With ``m = floor(target_fpr * n_valid)`` false positives allowed, the threshold sits just
    above the (m+1)-th highest negative score; ties at that score are all excluded, so the
    achieved FPR can be below the target. When ``target_fpr < 1/n_valid`` no false positive is
    allowed and the threshold is just above the highest negative: usable, but the sample cannot
    resolve the target (``resolvable=False``).
    """
    if not (isinstance(target_fpr, (int, float)) and 0 < target_fpr < 1):
        raise MetricInputError(f"target_fpr={target_fpr!r}; it must be a false-positive rate in (0, 1), e.g. 1e-3")
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


def _columns(cells: Any) -> dict[str, np.ndarray]:
    if hasattr(cells, "column_names"):  # a pyarrow Table
        return {name: cells.column(name).to_numpy(zero_copy_only=False) for name in cells.column_names}
    return {name: np.asarray(v) for name, v in dict(cells).items()}


def marginal(cells: Any, by: str | Sequence[str]) -> dict[str, np.ndarray]:
    """Completeness pooled over every axis except ``by`` (one column, or two for a heatmap).

    Counts are added before the posterior is formed (pooling injections), which is what a
    marginal completeness means; averaging per-cell completeness would weight sparse cells wrongly.
    Rows are sorted by the ``by`` values (lexicographically for two columns); the result has the
    ``by`` columns, ``n_detected``, ``n_ok``, ``fraction_detected`` and the completeness posterior.
    """
    cols = _columns(cells)
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in (*keys, *COUNT_COLUMNS) if c not in cols]
    if missing:
        raise MetricInputError(f"selection-function cells lack column(s) {', '.join(missing)}; "
                               f"columns present: {', '.join(sorted(cols))}")
    axis_values, inverse = [], []
    for key in keys:
        values, inv = np.unique(cols[key], return_inverse=True)
        axis_values.append(values)
        inverse.append(inv.ravel())
    flat = np.ravel_multi_index(inverse, [v.size for v in axis_values]) if len(keys) > 1 else inverse[0]
    groups, first = np.unique(flat, return_index=True)
    index = np.searchsorted(groups, flat)
    k = np.round(np.bincount(index, weights=cols["n_detected"].astype(np.float64), minlength=groups.size))
    n = np.round(np.bincount(index, weights=cols["n_ok"].astype(np.float64), minlength=groups.size))
    out = {key: np.asarray(cols[key])[first] for key in keys}
    return {**out, "n_detected": k.astype(np.int64), "n_ok": n.astype(np.int64),
            "fraction_detected": fraction_detected(k, n), **completeness_posterior(k, n)}


def marginal_tables(cells: Any, axes: Sequence[str] = AXES) -> dict[str, dict[str, list]]:
    """One marginal table per axis present in ``cells`` (as JSON-ready lists)."""
    cols = _columns(cells)
    return {axis: {key: val.tolist() for key, val in marginal(cols, axis).items()}
            for axis in axes if axis in cols}


def summary(cells: Any) -> dict[str, float]:
    """Completeness pooled over every cell: counts (int), ``fraction_detected`` and the posterior."""
    cols = _columns(cells)
    k, n = int(np.sum(cols["n_detected"])), int(np.sum(cols["n_ok"]))
    return {"n_detected": k, "n_ok": n, "fraction_detected": float(fraction_detected(k, n)),
            **{key: float(val) for key, val in completeness_posterior(k, n).items()}}


def as_rows(table: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    keys = list(table)
    return [dict(zip(keys, vals)) for vals in zip(*(table[k] for k in keys))]
