"""Selection-function statistics against scipy and closed forms: completeness posteriors (the
columns the selection-function stage writes), the target-FPR threshold against a brute-force count,
and grid bins."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dhs_eval.selection import completeness_posterior, fixed_threshold, threshold_at_fpr
from dhs_eval.strata import bin_index


def test_completeness_matches_scipy_beta_and_closed_forms():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 500, 200)
    k = rng.integers(0, n + 1)
    out = completeness_posterior(k, n)
    a, b = k + 0.5, n - k + 0.5
    np.testing.assert_allclose(out["completeness_median"], stats.beta(a, b).median(), rtol=1e-10)
    np.testing.assert_array_equal(out["completeness"], k / n)  # the published k/n
    for tag, level in (("68", 0.68), ("95", 0.95)):
        lo, hi = stats.beta.interval(level, a, b)
        np.testing.assert_allclose(out[f"completeness_low_{tag}"], lo, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(out[f"completeness_high_{tag}"], hi, rtol=1e-10, atol=1e-14)
    # closed form: k = n/2 gives a symmetric Beta(a, a): median 1/2, interval symmetric about it
    half = completeness_posterior(np.array([5, 50]), np.array([10, 100]))
    np.testing.assert_allclose(half["completeness_median"], 0.5, atol=1e-12)
    np.testing.assert_allclose(half["completeness_low_95"] + half["completeness_high_95"], 1.0, atol=1e-12)
    # closed form: n = 1, k = 0 gives Beta(1/2, 3/2), whose CDF is (2/pi)(arcsin(sqrt x) + sqrt(x (1 - x)))
    med = completeness_posterior(np.array([0]), np.array([1]))["completeness_median"][0]
    cdf = 2 / np.pi * (np.arcsin(np.sqrt(med)) + np.sqrt(med * (1 - med)))
    assert cdf == pytest.approx(0.5, abs=1e-9)
    empty = completeness_posterior(np.array([0]), np.array([0]))
    assert all(np.isnan(v[0]) for v in empty.values())
    with pytest.raises(ValueError):
        completeness_posterior(np.array([3]), np.array([2]))


def test_threshold_at_fpr_against_brute_force():
    rng = np.random.default_rng(1)
    neg = rng.random(2000)
    neg[:7] = np.nan  # failed scores are not negatives that passed
    thr = threshold_at_fpr(neg, 0.01)
    valid = neg[np.isfinite(neg)]
    assert thr.n_valid == 1993 and thr.n_invalid == 7
    assert (valid >= thr.threshold).sum() == 19 == thr.n_false_positive  # floor(0.01 * 1993)
    assert thr.achieved_fpr == pytest.approx(19 / 1993) and thr.achieved_fpr <= 0.01
    # lowest such threshold: the next negative below it would be a 20th false positive
    assert np.sort(valid)[::-1][19] < thr.threshold
    tiny = threshold_at_fpr(valid[:50], 1e-3)
    assert not tiny.resolvable and tiny.n_false_positive == 0 and tiny.threshold > valid[:50].max()


def test_bin_index_half_open_with_closed_last_bin():
    idx = bin_index([0.9, 1.0, 1.2, 1.4, 1.6, np.nan, 0.5], [1.0, 1.4, 1.6])
    assert idx.tolist() == [-1, 0, 0, 1, 1, -1, -1]


def test_fixed_threshold_measures_nothing():
    thr = fixed_threshold(0.7)
    assert (thr.threshold, thr.source, thr.status) == (0.7, "fixed", "ok")
    assert thr.target_fpr is thr.achieved_fpr is thr.n_valid is thr.resolvable is None
    assert list(thr.as_dict()) == ["threshold", "source", "target_fpr", "achieved_fpr", "n_false_positive",
                                   "n_valid", "n_invalid", "resolvable", "status"]


def test_unique_host_intervals_are_the_jeffreys_posterior_of_the_host_count():
    """Against scipy: k u/n successes in u trials; u = n gives the nominal intervals exactly."""
    from dhs_eval.selection import unique_host_posterior

    k, n, u = np.array([30, 30, 0, 0]), np.array([100, 100, 40, 0]), np.array([100, 25, 10, 0])
    out = unique_host_posterior(k, n, u)
    nominal = completeness_posterior(k[:1], n[:1])
    assert out["completeness_low_95_unique"][0] == pytest.approx(nominal["completeness_low_95"][0], rel=1e-12)
    lo, hi = stats.beta.interval(0.95, 30 * 0.25 + 0.5, 70 * 0.25 + 0.5)
    assert (out["completeness_low_95_unique"][1], out["completeness_high_95_unique"][1]) == pytest.approx((lo, hi))
    assert out["completeness_high_68_unique"][1] - out["completeness_low_68_unique"][1] > (
        nominal["completeness_high_68"][0] - nominal["completeness_low_68"][0])  # fewer hosts, wider
    lo, hi = stats.beta.interval(0.68, 0.5, 10.5)
    assert (out["completeness_low_68_unique"][2], out["completeness_high_68_unique"][2]) == pytest.approx((lo, hi))
    assert np.isnan(out["completeness_low_95_unique"][3])
    with pytest.raises(ValueError):
        unique_host_posterior(np.array([1]), np.array([10]), np.array([11]))


def test_long_form_cells_are_narrowed_to_one_threshold_before_pooling():
    from dhs_eval.selection import MetricInputError, at_threshold, marginal, summary, threshold_names

    cells = {"theta_e": np.array([1.0, 1.0, 2.0, 2.0]), "threshold_name": np.array(["p>=0.5", "fpr=0.001"] * 2),
             "primary": np.array([True, False, True, False]), "n_detected": np.array([5, 2, 7, 3]),
             "n_ok": np.array([10, 10, 10, 10])}
    assert threshold_names(cells) == ["p>=0.5", "fpr=0.001"]
    assert summary(at_threshold(cells))["n_detected"] == 12
    assert summary(at_threshold(cells, "fpr=0.001"))["n_detected"] == 5
    with pytest.raises(MetricInputError, match="several thresholds"):
        marginal(cells, "theta_e")
    with pytest.raises(MetricInputError, match="not in these cells"):
        at_threshold(cells, "p>=0.9")
