"""Recall and false-positive rate per stratum, each as k/n with a binomial interval.

A lens finder's average recall hides that it may find bright tier-A lenses and miss tier-B ones,
and its average FPR hides which kinds of non-lens fool it (edge-on spirals, rings, mergers). So
each stratum is reported as a count — "FPR edge_on_proxy @0.5 = 0.0074 (44/5,929)" — with a
Jeffreys interval (Wilson and Clopper-Pearson available), and an empty stratum says "not
defined" instead of printing 0.

Recall is measured on the positives of a stratum, FPR on its negatives; a cutout is called a
lens when ``score >= threshold``. NaN scores are excluded and counted per stratum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dhs_eval._inputs import as_labels, as_scores
from dhs_eval.errors import MetricInputError
from dhs_eval.intervals import binomial_interval

#: label used for rows whose stratum column is null (e.g. a positive without a tier)
MISSING = "(none)"


@dataclass(frozen=True)
class Proportion:
    """k of n cutouts in a stratum called lenses, with a binomial interval."""

    metric: str  # "recall" (positives called lenses) or "FPR" (negatives called lenses)
    stratum: str
    threshold: float
    k: int
    n: int
    low: float
    high: float
    level: float
    method: str
    n_nan: int = 0  # cutouts of the stratum whose score was NaN (excluded from k and n)

    @property
    def estimate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def describe(self) -> str:
        """E.g. ``FPR edge_on_proxy @0.5 = 0.0074 (44/5,929)``."""
        head = f"{self.metric} {self.stratum} @{self.threshold:g}"
        if self.n == 0:
            return f"{head} = not defined (0/0, empty stratum)"
        return f"{head} = {self.estimate:.4f} ({self.k:,}/{self.n:,})"

    def as_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "stratum": self.stratum, "threshold": self.threshold, "k": self.k,
                "n": self.n, "estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "method": self.method, "n_nan": self.n_nan, "text": self.describe()}


def _prepare(labels: object, scores: object, groups: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = as_labels(labels)
    s = as_scores(scores, y.size)
    g = np.asarray(groups, dtype=object)
    if g.shape != y.shape:
        raise MetricInputError(f"groups has {g.size} values but labels has {y.size}; they must match")
    g = np.array([MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in g],
                 dtype=object)
    return y, s, g


def _by(metric: str, label: int, labels: object, scores: object, groups: object, threshold: float,
        level: float, method: str, order: tuple[str, ...]) -> list[Proportion]:
    y, s, g = _prepare(labels, scores, groups)
    present = sorted(set(g[y == label]))
    names = [*order, *(v for v in present if v not in order)]
    out = []
    for name in names:
        sel = (g == name) & (y == label)
        finite = sel & ~np.isnan(s)
        k, n = int(np.sum(s[finite] >= threshold)), int(finite.sum())
        low, high = binomial_interval(k, n, level=level, method=method)
        out.append(Proportion(metric, name, float(threshold), k, n, low, high, level, method,
                              int(sel.sum() - n)))
    return out


def recall_by(labels: object, scores: object, groups: object, threshold: float = 0.5, *, level: float = 0.95,
              method: str = "jeffreys", order: tuple[str, ...] = ()) -> list[Proportion]:
    """Recall of the positives in each group (e.g. ``tier``); ``order`` lists strata always reported."""
    return _by("recall", 1, labels, scores, groups, threshold, level, method, order)


def fpr_by(labels: object, scores: object, groups: object, threshold: float = 0.5, *, level: float = 0.95,
           method: str = "jeffreys", order: tuple[str, ...] = ()) -> list[Proportion]:
    """False-positive rate of the negatives in each group (e.g. ``pool``, ``confuser_category``)."""
    return _by("FPR", 0, labels, scores, groups, threshold, level, method, order)


def quantile_edges(values: object, n_bins: int = 4) -> np.ndarray:
    """Bin edges at quantiles of the finite values (duplicates merged); empty when none are finite."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.array([])
    return np.unique(np.quantile(v, np.linspace(0, 1, n_bins + 1)))


def bin_index(values: object, edges: object) -> np.ndarray:
    """Bin of each value for increasing ``edges``: lo <= v < hi, the last bin closed; -1 outside or NaN."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right") - 1
    idx = np.where(v == e[-1], len(e) - 2, idx)
    return np.where(np.isfinite(v) & (idx >= 0) & (idx <= len(e) - 2), idx, -1)


def bin_labels(values: object, edges: object, name: str) -> np.ndarray:
    """Stratum label per value, e.g. ``theta_e [0.5, 1)``; the last bin is closed; outside -> (none)."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    out = np.full(v.shape, MISSING, dtype=object)
    if e.size < 2:
        return out
    idx = bin_index(v, e)
    ok = idx >= 0
    names = [f"{name} [{e[i]:.4g}, {e[i + 1]:.4g}{']' if i == e.size - 2 else ')'}" for i in range(e.size - 1)]
    out[ok] = np.asarray(names, dtype=object)[idx[ok]]
    return out


def binned(labels: object, scores: object, values: object, name: str, threshold: float = 0.5, *,
           edges: object | None = None, n_bins: int = 4, level: float = 0.95,
           method: str = "jeffreys") -> dict[str, list[Proportion]]:
    """Recall and FPR per bin of a continuous column (theta_E, PSF FWHM, depth).

    Without ``edges`` the bins are quantiles of the values, so each holds a similar number of cutouts.
    """
    e = quantile_edges(values, n_bins) if edges is None else np.asarray(edges, dtype=np.float64)
    groups = bin_labels(values, e, name)
    order = tuple(dict.fromkeys(str(g) for g in bin_labels(0.5 * (e[1:] + e[:-1]), e, name))) if e.size > 1 else ()
    return {"edges": e.tolist(),
            "recall": recall_by(labels, scores, groups, threshold, level=level, method=method, order=order),
            "fpr": fpr_by(labels, scores, groups, threshold, level=level, method=method, order=order)}
