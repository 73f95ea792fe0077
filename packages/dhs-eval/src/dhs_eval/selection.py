"""Selection-function statistics: completeness per grid cell, detection thresholds, marginals.

Injection-recovery gives, per cell of the (theta_E, PSF, depth, source magnitude) grid, the
number of injections scored validly (``n_ok``) and the number of those above the detection
threshold (``n_detected``). Completeness is reported as the Jeffreys posterior
Beta(k+1/2, n-k+1/2): its median and central 68 % / 95 % intervals. Unlike k/n with a Wald error
it stays inside [0, 1] and is honest for cells with few injections or completeness near 0 or 1.

The detection threshold comes from a target FPR on *validly scored* negatives only: a cutout that
failed to score is not a negative that passed, and counting it would lower the achieved FPR.
Because only whole false positives exist, the achieved FPR is reported next to the target.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from dhs_eval.errors import MetricInputError
from dhs_eval.intervals import _counts, jeffreys_posterior

COUNT_COLUMNS = ("n_detected", "n_ok")


def completeness(n_detected: object, n_ok: object) -> dict[str, np.ndarray]:
    """Per cell: k/n, and the Jeffreys posterior median with 68 % / 95 % intervals (NaN when n_ok = 0)."""
    k, n = _counts(n_detected, n_ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
    return {"n_detected": k.astype(np.int64), "n_ok": n.astype(np.int64), "completeness": raw,
            **{f"completeness_{key}": val for key, val in jeffreys_posterior(k, n).items()}}


@dataclass(frozen=True)
class DetectionThreshold:
    """A score threshold chosen for a target FPR, and what it achieves on the negatives."""

    threshold: float  # call a lens when score >= threshold
    target_fpr: float
    achieved_fpr: float  # n_false_positive / n_valid
    n_false_positive: int
    n_valid: int  # validly scored negatives (finite scores)
    n_invalid: int  # negatives without a valid score, excluded
    resolvable: bool  # False when target_fpr < 1/n_valid
    status: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_at_fpr(negative_scores: object, target_fpr: float) -> DetectionThreshold:
    """Lowest threshold whose FPR on the validly scored negatives does not exceed ``target_fpr``.

    With ``k = floor(target_fpr * n_valid)`` false positives allowed, the threshold sits just
    above the (k+1)-th highest negative score; ties at that score are all excluded, so the
    achieved FPR can be below the target. When ``target_fpr < 1/n_valid`` no false positive is
    allowed and the threshold is just above the highest negative: usable, but the sample cannot
    resolve the target (``resolvable=False``).
    """
    if not (isinstance(target_fpr, (int, float)) and 0 < target_fpr < 1):
        raise MetricInputError(f"target_fpr={target_fpr!r}; it must be a false-positive rate in (0, 1), e.g. 1e-3")
    s = np.asarray(negative_scores, dtype=np.float64).ravel()
    valid = s[np.isfinite(s)]
    n_valid, n_invalid = int(valid.size), int(s.size - valid.size)
    if n_valid == 0:
        return DetectionThreshold(math.nan, target_fpr, math.nan, 0, 0, n_invalid, False,
                                  "not defined: no validly scored negatives")
    allowed = int(math.floor(target_fpr * n_valid + 1e-9))
    desc = np.sort(valid)[::-1]
    if allowed >= n_valid:
        threshold = float(desc[-1])
    else:
        threshold = float(np.nextafter(desc[allowed], np.inf))
    n_fp = int(np.sum(valid >= threshold))
    resolvable = target_fpr >= 1.0 / n_valid
    status = "ok" if resolvable else (
        f"not resolvable: target FPR {target_fpr:g} < 1/n_valid = 1/{n_valid:,}; threshold is above every negative"
    )
    return DetectionThreshold(threshold, float(target_fpr), n_fp / n_valid, n_fp, n_valid, n_invalid,
                              resolvable, status)


def _columns(cells: Any) -> dict[str, np.ndarray]:
    if hasattr(cells, "column_names"):  # a pyarrow Table
        return {name: cells.column(name).to_numpy(zero_copy_only=False) for name in cells.column_names}
    return {name: np.asarray(v) for name, v in dict(cells).items()}


def marginal(cells: Any, by: str | Sequence[str]) -> dict[str, np.ndarray]:
    """Completeness summed over every axis except ``by`` (one column, or two for a heatmap).

    Counts are added before the posterior is formed (pooling injections), which is what a
    marginal completeness means; averaging per-cell completeness would weight sparse cells wrongly.
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
    k = np.bincount(index, weights=cols["n_detected"].astype(np.float64), minlength=groups.size)
    n = np.bincount(index, weights=cols["n_ok"].astype(np.float64), minlength=groups.size)
    out = {key: np.asarray(cols[key])[first] for key in keys}
    return {**out, **completeness(np.round(k), np.round(n))}


def marginal_tables(cells: Any, axes: Sequence[str] = ("theta_e", "source_mag", "psfsize_r", "psfdepth_r")
                    ) -> dict[str, dict[str, list]]:
    """One marginal table per axis present in ``cells`` (as JSON-ready lists)."""
    cols = _columns(cells)
    return {axis: {key: val.tolist() for key, val in marginal(cols, axis).items()}
            for axis in axes if axis in cols}


def summary(cells: Any) -> dict[str, float]:
    """Completeness pooled over every cell."""
    cols = _columns(cells)
    total = completeness(int(np.sum(cols["n_detected"])), int(np.sum(cols["n_ok"])))
    return {key: (int(val) if key in COUNT_COLUMNS else float(val)) for key, val in total.items()}


def as_rows(table: Mapping[str, Sequence]) -> list[dict[str, Any]]:
    keys = list(table)
    return [dict(zip(keys, vals)) for vals in zip(*(table[k] for k in keys))]
