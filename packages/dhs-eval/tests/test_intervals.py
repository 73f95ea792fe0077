"""Binomial intervals against scipy, their coverage, the bootstrap, and DeLong against the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dhs_eval import metrics
from dhs_eval.errors import MetricInputError
from dhs_eval.intervals import jeffreys_posterior

CASES = [(0, 10), (1, 10), (5, 10), (10, 10), (44, 5929), (17, 500), (0, 1), (3, 7)]


@pytest.mark.parametrize("k,n", CASES)
@pytest.mark.parametrize("level", [0.68, 0.95])
def test_binomial_intervals_match_scipy(k, n, level):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert metrics.binomial_interval(k, n, level=level, method="wilson") == pytest.approx((ref.low, ref.high))
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    assert metrics.binomial_interval(k, n, level=level, method="clopper-pearson") == pytest.approx((ref.low, ref.high))
    low, high = stats.beta.interval(level, k + 0.5, n - k + 0.5)
    low, high = (0.0 if k == 0 else low), (1.0 if k == n else high)  # Brown, Cai & DasGupta (2001)
    assert metrics.binomial_interval(k, n, level=level) == pytest.approx((low, high))


def test_binomial_interval_is_batched_and_handles_empty():
    k, n = np.array([c[0] for c in CASES]), np.array([c[1] for c in CASES])
    low, high = metrics.binomial_interval(k, n)
    for i, (ki, ni) in enumerate(CASES):
        assert (low[i], high[i]) == pytest.approx(metrics.binomial_interval(ki, ni))
    assert all(math.isnan(v) for v in metrics.binomial_interval(0, 0))
    with pytest.raises(MetricInputError, match="0 <= k <= n"):
        metrics.binomial_interval(5, 3)
    with pytest.raises(MetricInputError, match="valid binomial interval methods"):
        metrics.binomial_interval(1, 3, method="wald")


@pytest.mark.parametrize("method", ["jeffreys", "wilson"])
def test_interval_coverage_at_lens_search_rates(method):
    """Binomial draws at p = 0.035, n = 500: the 95 % interval covers p in 93-97 % of 2,000 trials."""
    p, n = 0.035, 500
    k = np.random.default_rng(2024).binomial(n, p, size=2000)
    low, high = metrics.binomial_interval(k, np.full_like(k, n), method=method)
    coverage = np.mean((low <= p) & (p <= high))
    assert 0.93 <= coverage <= 0.97


def test_jeffreys_posterior_matches_scipy_beta():
    k, n = np.array([0, 3, 50, 200]), np.array([200, 200, 200, 200])
    post = jeffreys_posterior(k, n)
    for i in range(k.size):
        dist = stats.beta(k[i] + 0.5, n[i] - k[i] + 0.5)
        assert post["median"][i] == pytest.approx(dist.median())
        assert (post["low_68"][i], post["high_68"][i]) == pytest.approx(dist.interval(0.68))
        assert (post["low_95"][i], post["high_95"][i]) == pytest.approx(dist.interval(0.95))
    assert np.isnan(jeffreys_posterior(0, 0)["median"])


def _data(seed, n=600):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    latent = rng.normal(size=n) + y
    return y, latent + rng.normal(0, 0.7, n), latent + rng.normal(0, 0.9, n)


def test_bootstrap_is_seeded_and_stratified():
    y, s1, _ = _data(0)
    a = metrics.bootstrap_ci(metrics.roc_auc, y, s1, n_resamples=300, seed=5, strata=y)
    b = metrics.bootstrap_ci(metrics.roc_auc, y, s1, n_resamples=300, seed=5, strata=y)
    c = metrics.bootstrap_ci(metrics.roc_auc, y, s1, n_resamples=300, seed=6, strata=y)
    assert a == b and a != c
    assert a.low < a.estimate < a.high and a.n_undefined == 0
    # a tiny unstratified sample produces one-class resamples: they are counted, not averaged in
    few = metrics.bootstrap_ci(metrics.roc_auc, [0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], n_resamples=200)
    assert few.n_undefined > 0


def test_delong_standard_error_and_test_agree_with_bootstrap():
    y, s1, s2 = _data(1)
    n_boot = 1500
    rng = np.random.default_rng(3)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    auc1, diff = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        a1, a2 = metrics.roc_auc(y[idx], s1[idx]), metrics.roc_auc(y[idx], s2[idx])
        auc1[i], diff[i] = a1, a1 - a2
    se = metrics.auc_standard_error(y, s1)
    assert se == pytest.approx(auc1.std(ddof=1), rel=0.12)
    z, p = metrics.delong_test(y, s1, s2)
    z_boot = (metrics.roc_auc(y, s1) - metrics.roc_auc(y, s2)) / diff.std(ddof=1)
    assert z == pytest.approx(z_boot, rel=0.15)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert metrics.delong_test(y, s2, s1) == pytest.approx((-z, p))
    assert metrics.delong_test(y, s1, s1) == (0.0, 1.0)
    # a monotone transform leaves the ranking, hence the AUC, unchanged
    assert metrics.delong_test(y, s1, np.exp(s1)) == (0.0, 1.0)


def test_ks_helper_matches_scipy():
    from dhs_eval.stats import ks_test

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=400)
    ref = stats.ks_2samp(a, b)
    res = ks_test(a, b)
    assert (res["statistic"], res["p_value"]) == pytest.approx((ref.statistic, ref.pvalue))
    assert res["n_a"] == 300 and res["n_b"] == 400
    res = ks_test(np.append(a, np.nan), [])
    assert res["status"].startswith("not defined") and res["n_a"] == 300
