"""Selection-function statistics: completeness per grid cell, detection thresholds, marginals.

Injection-recovery gives, per cell of the (theta_E, PSF, depth, source magnitude) grid, the
number of injections scored validly (``n_ok``) and the number of those at or above a detection
threshold (``n_detected``, the k of k/n). ``completeness`` is k/n, as the published tables give
it; the Jeffreys posterior Beta(k+1/2, n-k+1/2) gives its median (``completeness_median``) and
central 68 % / 95 % intervals (``completeness_low_68`` ... ``completeness_high_95``), which stay
inside [0, 1] and are honest for cells with few injections or completeness near 0 or 1. A cell
with n = 0 has no completeness (NaN), never 0.

When a cell had to reuse hosts, its n injections are not n independent trials: the intervals
on unique hosts (:func:`unique_host_posterior`) scale the counts to the number of distinct hosts.

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
from dhs_eval.intervals import POSTERIOR_INTERVALS, _counts, jeffreys_posterior

COUNT_COLUMNS = ("n_detected", "n_ok")
#: the axes of the selection-function grid, in the order marginal tables are reported (the
#: field's units: theta_E and PSF FWHM in arcsec, 5-sigma depth and source magnitude in AB mag)
AXES = ("theta_e", "beta_frac", "source_mag", "depth_m5", "psfsize_r")


def completeness_posterior(n_detected: object, n_ok: object) -> dict[str, np.ndarray]:
    """``completeness`` = k/n, the posterior median ``completeness_median`` and the intervals
    ``completeness_low_68/high_68/low_95/high_95``, batched.

    ``n_detected`` and ``n_ok`` are counts of the same shape (or scalars) with 0 <= k <= n;
    NaN where ``n_ok`` = 0.
    """
    post = jeffreys_posterior(n_detected, n_ok)
    return {"completeness": fraction_detected(n_detected, n_ok),
            **{f"completeness_{key}": val for key, val in post.items()}}


def fraction_detected(n_detected: object, n_ok: object) -> np.ndarray:
    """Raw k/n per cell (NaN where n = 0)."""
    k, n = _counts(n_detected, n_ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / np.maximum(n, 1), np.nan)


def unique_host_posterior(n_detected: object, n_ok: object, n_unique: object) -> dict[str, np.ndarray]:
    """Jeffreys intervals of a cell whose ``n_ok`` injections used only ``n_unique`` distinct hosts.

    Arcs painted into the same host share its light, noise and neighbours, so they are not
    independent trials; the effective number of trials is taken as the number of hosts: the
    counts are scaled to k u / n successes in u trials, Beta(k u/n + 1/2, (n - k) u/n + 1/2).
    With u = n (no reuse) these are the nominal intervals. Keys ``completeness_low_68_unique``
    ... ``completeness_high_95_unique``; NaN where n = 0.
    """
    from scipy import stats

    k, n = _counts(n_detected, n_ok)
    u = np.broadcast_to(np.asarray(n_unique, dtype=np.float64), n.shape)
    if np.any(u < 0) or np.any(u > n):
        raise MetricInputError("n_unique must satisfy 0 <= n_unique <= n_ok")
    empty = (n == 0) | (u == 0)
    scale = np.where(empty, 1.0, u / np.maximum(n, 1))
    a, b = k * scale + 0.5, np.where(empty, 1.0, (n - k) * scale + 0.5)
    out = {}
    for tag, low, high in POSTERIOR_INTERVALS:
        out[f"completeness_low_{tag}_unique"] = np.where(empty, np.nan, stats.beta.ppf(low, a, b))
        out[f"completeness_high_{tag}_unique"] = np.where(empty, np.nan, stats.beta.ppf(high, a, b))
    return out


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
    ``by`` columns, ``n_detected``, ``n_ok``, ``completeness`` (k/n) and the posterior.

    ``cells`` in long form (one row per cell and threshold, a ``threshold_name`` column) must be
    narrowed to one threshold first (:func:`at_threshold`): pooling across thresholds is refused.
    """
    cols = _single_threshold(_columns(cells))
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
    return {**out, "n_detected": k.astype(np.int64), "n_ok": n.astype(np.int64), **completeness_posterior(k, n)}


def marginal_tables(cells: Any, axes: Sequence[str] = AXES) -> dict[str, dict[str, list]]:
    """One marginal table per axis present in ``cells`` (as JSON-ready lists)."""
    cols = _columns(cells)
    return {axis: {key: val.tolist() for key, val in marginal(cols, axis).items()}
            for axis in axes if axis in cols}


def summary(cells: Any) -> dict[str, float]:
    """Completeness over every cell, both ways, labelled: pooled counts (``n_detected``, ``n_ok``,
    ``completeness`` = pooled k/n and its posterior) and ``mean_over_cells`` (the unweighted
    mean of the per-cell k/n over the cells with n > 0, as the published summaries give it),
    with ``n_cells`` and ``n_cells_empty``."""
    cols = _single_threshold(_columns(cells))
    k, n = int(np.sum(cols["n_detected"])), int(np.sum(cols["n_ok"]))
    per_cell = fraction_detected(cols["n_detected"], cols["n_ok"])
    filled = np.isfinite(per_cell)
    return {"n_detected": k, "n_ok": n, **{key: float(val) for key, val in completeness_posterior(k, n).items()},
            "mean_over_cells": float(per_cell[filled].mean()) if filled.any() else math.nan,
            "n_cells": int(per_cell.size), "n_cells_empty": int((~filled).sum())}


def threshold_names(cells: Any) -> list[str]:
    """The thresholds of long-form cells, primary first (empty for one-threshold cells)."""
    cols = _columns(cells)
    if "threshold_name" not in cols:
        return []
    names = [str(v) for v in cols["threshold_name"]]
    order = dict.fromkeys(n for n, p in zip(names, cols.get("primary", [False] * len(names))) if p)
    order.update(dict.fromkeys(names))
    return list(order)


def at_threshold(cells: Any, name: str | None = None) -> dict[str, np.ndarray]:
    """The rows of one threshold of long-form cells (``name``; None: the primary one) as columns.

    One-threshold cells (no ``threshold_name`` column) are returned unchanged."""
    cols = _columns(cells)
    if "threshold_name" not in cols:
        return cols
    names = threshold_names(cols)
    name = names[0] if name is None else name
    if name not in names:
        raise MetricInputError(f"threshold {name!r} is not in these cells; present: {', '.join(names)}")
    keep = np.asarray([str(v) == name for v in cols["threshold_name"]])
    return {key: np.asarray(val)[keep] for key, val in cols.items()}


def _single_threshold(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "threshold_name" in cols and len(set(map(str, cols["threshold_name"]))) > 1:
        raise MetricInputError("these cells hold several thresholds (one row per cell and threshold); "
                               "select one with dhs_eval.selection.at_threshold(cells, name) first")
    return cols


def as_rows(table: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    keys = list(table)
    return [dict(zip(keys, vals)) for vals in zip(*(table[k] for k in keys))]
