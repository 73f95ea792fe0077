"""Intervals for proportions and for arbitrary metrics.

* :func:`binomial_interval` — k successes in n trials (recall of a tier, FPR of a pool,
  completeness of a cell). Jeffreys is the default: it is the equal-tailed interval of the
  Beta(k+1/2, n-k+1/2) posterior and keeps close to nominal coverage at the small proportions lens
  searches live at (FPR ~1e-3, completeness of faint arcs), where the Wald interval collapses.
  Following Brown, Cai & DasGupta (2001) the Jeffreys lower bound is 0 when k = 0 and the upper
  bound 1 when k = n. Wilson and Clopper-Pearson ("exact", conservative) are available.
* :func:`jeffreys_posterior` — posterior median and central 68 % / 95 % intervals (selection
  function), at the quantiles of :data:`POSTERIOR_INTERVALS`.
* :func:`bootstrap_ci` — percentile bootstrap of any statistic, seeded, optionally stratified
  (resampling positives and negatives separately keeps both classes in every resample).

Everything is batched: ``k`` and ``n`` may be arrays of the same shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dhs_eval.errors import MetricInputError

INTERVAL_METHODS = ("jeffreys", "wilson", "clopper-pearson")
#: (suffix, lower quantile, upper quantile) of the central posterior intervals: 68 % and 95 %
POSTERIOR_INTERVALS = (("68", 0.16, 0.84), ("95", 0.025, 0.975))


def _counts(k: object, n: object) -> tuple[np.ndarray, np.ndarray]:
    k_arr, n_arr = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if k_arr.shape != n_arr.shape and k_arr.ndim and n_arr.ndim:
        raise MetricInputError(f"k has shape {k_arr.shape} and n has shape {n_arr.shape}; they must match")
    k_arr, n_arr = np.broadcast_arrays(k_arr, n_arr)
    if not (np.all(np.isfinite(k_arr)) and np.all(np.isfinite(n_arr))):
        raise MetricInputError("k and n must be finite counts")
    if np.any(k_arr != np.round(k_arr)) or np.any(n_arr != np.round(n_arr)):
        raise MetricInputError("k and n must be whole numbers (counts of successes and trials)")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise MetricInputError("counts must satisfy 0 <= k <= n")
    return k_arr, n_arr


def _level(level: float) -> float:
    if not 0 < level < 1:
        raise MetricInputError(f"level={level!r}; an interval level is a probability in (0, 1), e.g. 0.95")
    return float(level)


def binomial_interval(
    k: object, n: object, *, level: float = 0.95, method: str = "jeffreys"
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Two-sided ``level`` interval for a binomial proportion k/n; NaN where n = 0.

    Returns ``(low, high)`` as floats for scalar input, arrays otherwise.
    """
    # scipy is imported here, not at module top: the selection statistics and the stage modules
    # import this module, and registering dhs-eval's plugins must stay light
    from scipy import stats

    level = _level(level)
    if method not in INTERVAL_METHODS:
        raise MetricInputError(f"method={method!r}; valid binomial interval methods: {', '.join(INTERVAL_METHODS)}")
    k_arr, n_arr = _counts(k, n)
    alpha = 1.0 - level
    empty = n_arr == 0
    n_safe = np.where(empty, 1.0, n_arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "jeffreys":
            a, b = k_arr + 0.5, n_safe - k_arr + 0.5
            low = np.where(k_arr == 0, 0.0, stats.beta.ppf(alpha / 2, a, b))
            high = np.where(k_arr == n_safe, 1.0, stats.beta.ppf(1 - alpha / 2, a, b))
        elif method == "wilson":
            z = stats.norm.ppf(1 - alpha / 2)
            centre = (k_arr + z * z / 2) / (n_safe + z * z)
            half = z / (n_safe + z * z) * np.sqrt(k_arr * (n_safe - k_arr) / n_safe + z * z / 4)
            low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
        else:
            low = np.where(k_arr == 0, 0.0, stats.beta.ppf(alpha / 2, np.maximum(k_arr, 1), n_safe - k_arr + 1))
            high = np.where(
                k_arr == n_safe, 1.0, stats.beta.ppf(1 - alpha / 2, k_arr + 1, np.maximum(n_safe - k_arr, 1))
            )
    low, high = np.where(empty, np.nan, low), np.where(empty, np.nan, high)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def jeffreys_posterior(k: object, n: object) -> dict[str, np.ndarray]:
    """Median and central 68 % / 95 % intervals of Beta(k+1/2, n-k+1/2); NaN where n = 0.

    Keys ``median``, ``low_68``, ``high_68``, ``low_95``, ``high_95``.
    """
    from scipy import stats  # lazily, as in binomial_interval

    k_arr, n_arr = _counts(k, n)
    empty = n_arr == 0
    a, b = k_arr + 0.5, np.where(empty, 1.0, n_arr - k_arr + 0.5)
    out = {"median": stats.beta.ppf(0.5, a, b)}
    for tag, low, high in POSTERIOR_INTERVALS:
        out[f"low_{tag}"] = stats.beta.ppf(low, a, b)
        out[f"high_{tag}"] = stats.beta.ppf(high, a, b)
    return {key: np.where(empty, np.nan, val) for key, val in out.items()}


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap interval and what went into it."""

    estimate: float  # the statistic on the original data
    low: float
    high: float
    level: float
    n_resamples: int  # resamples drawn
    n_undefined: int  # resamples where the statistic was NaN (e.g. one class), left out

    def as_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "n_resamples": self.n_resamples, "n_undefined": self.n_undefined}


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: object,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    strata: object | None = None,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows jointly.

    ``strata`` (e.g. the labels) resamples each stratum separately with its own size, so a
    metric like AUC never sees a resample without positives. The generator is
    ``numpy.random.default_rng(seed)``: the same seed gives the same interval.
    """
    level = _level(level)
    if n_resamples < 1:
        raise MetricInputError(f"n_resamples={n_resamples}; needs at least 1 resample (2000 is usual)")
    cols = [np.asarray(a) for a in arrays]
    if not cols:
        raise MetricInputError("bootstrap_ci needs at least one data array")
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise MetricInputError(f"bootstrap_ci arrays have lengths {[len(c) for c in cols]}; they must match")
    groups = [np.arange(n)]
    if strata is not None:
        st = np.asarray(strata)
        if len(st) != n:
            raise MetricInputError(f"strata has {len(st)} values but the data has {n}")
        groups = [np.flatnonzero(st == v) for v in np.unique(st)]
    estimate = float(statistic(*cols))
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        values[i] = statistic(*(c[idx] for c in cols))
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return BootstrapCI(estimate, math.nan, math.nan, level, n_resamples, n_resamples)
    low, high = np.quantile(ok, [(1 - level) / 2, 1 - (1 - level) / 2])
    return BootstrapCI(estimate, float(low), float(high), level, n_resamples, int(n_resamples - ok.size))
