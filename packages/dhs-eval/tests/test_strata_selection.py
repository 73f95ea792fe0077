"""Strata (k/n with binomial intervals) and selection-function statistics against direct counts and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dhs_eval import selection, strata
from dhs_eval.errors import MetricInputError
from dhs_eval.metrics import binomial_interval


def test_fpr_per_category_reads_like_the_field_reports_it():
    y = np.r_[np.zeros(5929, int), np.ones(3, int)]
    s = np.r_[np.ones(44), np.zeros(5885), [0.9, 0.2, 0.7]]
    cat = np.array(["edge_on_proxy"] * 5929 + [None] * 3, dtype=object)
    (row,) = strata.fpr_by(y, s, cat, 0.5)
    assert row.describe() == "FPR edge_on_proxy @0.5 = 0.0074 (44/5,929)"
    assert (row.low, row.high) == pytest.approx(stats.beta.interval(0.95, 44.5, 5929 - 44 + 0.5))
    assert row.as_dict()["k"] == 44 and row.as_dict()["n"] == 5929


def test_recall_per_tier_counts_nan_and_reports_empty_strata():
    y = np.array([1, 1, 1, 1, 1, 0, 0])
    s = np.array([0.9, 0.1, np.nan, 0.6, 0.7, 0.9, 0.1])
    tier = np.array(["A", "A", "A", "B", None, None, None], dtype=object)
    rows = {r.stratum: r for r in strata.recall_by(y, s, tier, 0.5, order=("A", "B", "C"), method="wilson")}
    assert (rows["A"].k, rows["A"].n, rows["A"].n_nan) == (1, 2, 1)
    assert (rows["B"].k, rows["B"].n) == (1, 1) and (rows[strata.MISSING].k, rows[strata.MISSING].n) == (1, 1)
    assert (rows["A"].low, rows["A"].high) == pytest.approx(binomial_interval(1, 2, method="wilson"))
    assert rows["C"].describe() == "recall C @0.5 = not defined (0/0, empty stratum)"
    assert math.isnan(rows["C"].estimate)
    with pytest.raises(MetricInputError, match="groups has 2 values"):
        strata.recall_by(y, s, ["A", "B"])


def test_binned_strata_partition_the_cutouts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = rng.random(400)
    theta_e = rng.uniform(0.5, 3.0, 400)
    out = strata.binned(y, s, theta_e, "theta_e", 0.5, edges=[0.5, 1.0, 2.0, 3.0])
    assert [r.stratum for r in out["recall"]] == ["theta_e [0.5, 1)", "theta_e [1, 2)", "theta_e [2, 3]"]
    assert sum(r.n for r in out["recall"]) == (y == 1).sum()
    assert sum(r.k for r in out["fpr"]) == np.sum((y == 0) & (s >= 0.5))
    quant = strata.binned(y, s, theta_e, "theta_e", 0.5, n_bins=4)
    sizes = [r.n for r in quant["recall"]]
    assert len(sizes) == 4 and max(sizes) - min(sizes) < 25


def test_completeness_is_the_jeffreys_posterior():
    k, n = np.array([0, 7, 200, 0]), np.array([200, 200, 200, 0])
    out = selection.completeness_posterior(k, n)
    for i in range(3):
        dist = stats.beta(k[i] + 0.5, n[i] - k[i] + 0.5)
        assert out["completeness_median"][i] == pytest.approx(dist.median())
        assert out["completeness"][i] == k[i] / n[i]
        assert (out["completeness_low_95"][i], out["completeness_high_95"][i]) == pytest.approx(dist.interval(0.95))
        assert (out["completeness_low_68"][i], out["completeness_high_68"][i]) == pytest.approx(dist.interval(0.68))
    raw = selection.fraction_detected(k, n)
    np.testing.assert_array_equal(raw[:3], k[:3] / n[:3])
    assert np.isnan(out["completeness"][3]) and np.isnan(raw[3])


def test_threshold_from_target_fpr_uses_only_valid_negatives():
    rng = np.random.default_rng(1)
    neg = rng.random(2000)
    with_failures = np.r_[neg, np.full(300, np.nan)]
    res = selection.threshold_at_fpr(with_failures, 0.01)
    assert (res.n_valid, res.n_invalid) == (2000, 300)
    assert res.n_false_positive == np.sum(neg >= res.threshold) == 20 and res.achieved_fpr == 0.01
    assert np.sum(neg >= np.nextafter(res.threshold, -np.inf)) == 21  # the lowest such threshold
    # ties at the cut: all tied negatives are excluded, achieved FPR reported below target
    tied = np.r_[np.full(5, 0.9), np.full(95, 0.1)]
    res = selection.threshold_at_fpr(tied, 0.03)
    assert res.n_false_positive == 0 and res.achieved_fpr == 0.0 and res.threshold > 0.9
    res = selection.threshold_at_fpr(neg, 1e-4)
    assert not res.resolvable and "1/2,000" in res.status and res.threshold > neg.max()
    assert "no validly scored" in selection.threshold_at_fpr([np.nan], 0.1).status
    with pytest.raises(MetricInputError):
        selection.threshold_at_fpr(neg, 0.0)


def test_marginals_pool_counts_across_other_axes():
    theta_e, psf, mag = np.meshgrid([0.5, 1.0, 1.5], [1.1, 1.3], [22.0, 23.0], indexing="ij")
    rng = np.random.default_rng(2)
    n_ok = rng.integers(50, 100, theta_e.shape)
    n_det = rng.binomial(n_ok, 0.4)
    cells = {"theta_e": theta_e.ravel(), "psfsize_r": psf.ravel(), "source_mag": mag.ravel(),
             "n_detected": n_det.ravel(), "n_ok": n_ok.ravel()}
    m = selection.marginal(cells, "theta_e")
    np.testing.assert_array_equal(m["theta_e"], [0.5, 1.0, 1.5])
    np.testing.assert_array_equal(m["n_ok"], n_ok.sum(axis=(1, 2)))
    np.testing.assert_array_equal(m["n_detected"], n_det.sum(axis=(1, 2)))
    np.testing.assert_array_equal(m["completeness"], n_det.sum(axis=(1, 2)) / n_ok.sum(axis=(1, 2)))
    np.testing.assert_array_equal(m["completeness_median"],
                                  selection.completeness_posterior(m["n_detected"], m["n_ok"])["completeness_median"])
    heat = selection.marginal(cells, ("theta_e", "psfsize_r"))
    assert heat["n_ok"].size == 6 and heat["n_ok"].sum() == n_ok.sum()
    tables = selection.marginal_tables(cells)
    assert set(tables) == {"theta_e", "source_mag", "psfsize_r"}
    total = selection.summary(cells)
    assert total["n_ok"] == n_ok.sum() and total["completeness"] == n_det.sum() / n_ok.sum()
    # the published summary: the unweighted mean of the per-cell k/n (cells with n > 0)
    assert total["mean_over_cells"] == pytest.approx(np.mean(n_det / n_ok)) and total["n_cells_empty"] == 0
    with pytest.raises(MetricInputError, match="lack column"):
        selection.marginal(cells, "psfdepth_r")
