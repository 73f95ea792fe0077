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


def compare_proportions(k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95) -> dict[str, object]:
    """Difference of two binomial proportions, k1/n1 - k2/n2, with an interval and a test.

    * interval: Newcombe's hybrid score interval (Newcombe 1998, Stat. Med. 17, 873, method 10),
      built from the Wilson interval of each proportion. Unlike the Wald interval it keeps close to
      nominal coverage at the few-per-cent completeness of injection tests and never leaves [-1, 1].
    * p_value: two-sided Fisher exact test of the 2 x 2 table (scipy: tables as or less probable
      than the observed one, under the hypergeometric law with both margins fixed).

    Both assume two independent samples; arms that share hosts and random draws (common random
    numbers) are positively correlated, for which the test and the interval are conservative.
    Returns difference, low, high, level, p_value, the counts, and a status ("ok" or why not defined).
    """
    from dhs_eval.intervals import binomial_interval

    out: dict[str, object] = {"k1": int(k1), "n1": int(n1), "k2": int(k2), "n2": int(n2), "level": float(level),
                              "interval_method": "newcombe_hybrid_score", "test": "fisher_exact_two_sided"}
    if n1 == 0 or n2 == 0:
        return {**out, "difference": math.nan, "low": math.nan, "high": math.nan, "p_value": math.nan,
                "status": "not defined: an empty sample"}
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = binomial_interval(k1, n1, level=level, method="wilson")
    l2, u2 = binomial_interval(k2, n2, level=level, method="wilson")
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    p_value = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided").pvalue
    return {**out, "difference": float(diff), "low": float(low), "high": float(high),
            "p_value": float(p_value), "status": "ok"}
