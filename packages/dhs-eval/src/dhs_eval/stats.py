"""Small statistical helpers shared by the diagnostics."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def ks_test(sample_a: object, sample_b: object, *, alternative: str = "two-sided") -> dict[str, object]:
    """Two-sample Kolmogorov-Smirnov test (scipy), NaNs dropped and counted.

    Used to ask whether, e.g., an arc statistic has the same distribution on real lenses and on
    injections. Returns statistic, p_value, sample sizes and a status ("ok" or why not defined).
    """
    a, b = np.asarray(sample_a, dtype=np.float64).ravel(), np.asarray(sample_b, dtype=np.float64).ravel()
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    out: dict[str, object] = {"n_a": int(fa.size), "n_b": int(fb.size),
                              "n_dropped": int(a.size - fa.size + b.size - fb.size)}
    if fa.size == 0 or fb.size == 0:
        return {**out, "statistic": math.nan, "p_value": math.nan, "status": "not defined: an empty sample"}
    res = stats.ks_2samp(fa, fb, alternative=alternative)
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue), "status": "ok"}
