"""dhs_eval.metrics against scikit-learn and brute-force definitions, on random and adversarial data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score, roc_curve

from dhs_core.errors import UserError
from dhs_eval import metrics
from dhs_eval.errors import MetricInputError, NaNScoresWarning


def _data(seed: int, n: int = 2000, ties: bool = False, prevalence: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = rng.normal(size=n) + 1.2 * y
    if ties:
        s = np.round(s, 1)  # heavy ties between and within classes
    return y, s


def _brute_tpr_at_fpr(y, s, target):
    best = (0.0, np.inf)
    for t in np.unique(s):
        fpr = np.mean(s[y == 0] >= t)
        tpr = np.mean(s[y == 1] >= t)
        if fpr <= target and tpr > best[0]:
            best = (tpr, t)
    return best


def _brute_fpr_at_tpr(y, s, target):
    best = (np.inf, None)
    for t in np.unique(s):
        fpr = np.mean(s[y == 0] >= t)
        tpr = np.mean(s[y == 1] >= t)
        if tpr >= target and fpr < best[0]:
            best = (fpr, t)
    return best


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_auc_and_partial_auc_match_sklearn(seed, ties):
    y, s = _data(seed, ties=ties)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for max_fpr in (1e-3, 1e-2, 0.1, 0.5, 1.0):
        assert metrics.partial_auc(y, s, max_fpr) == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_points_match_sklearn(ties):
    y, s = _data(4, ties=ties)
    fpr, tpr, thr = metrics.roc_points(y, s)
    ref_fpr, ref_tpr, ref_thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thr[1:], ref_thr[1:])
    assert thr[0] > s.max()  # "nothing is a lens", kept finite


@pytest.mark.parametrize("ties", [False, True])
def test_operating_points_match_brute_force(ties):
    y, s = _data(5, n=1500, ties=ties)
    for target in (0.005, 0.01, 0.05, 0.2):
        tpr, thr = metrics.tpr_at_fpr(y, s, target)
        ref_tpr, ref_thr = _brute_tpr_at_fpr(y, s, target)
        assert tpr == pytest.approx(ref_tpr)
        if ref_tpr > 0:
            assert thr == pytest.approx(ref_thr)
        rates = metrics.rates_at_threshold(y, s, thr)
        assert rates["recall"] == pytest.approx(tpr) and rates["fpr"] <= target
    for target in (0.5, 0.8, 0.95, 0.99):
        fpr, thr = metrics.fpr_at_tpr(y, s, target)
        ref_fpr, ref_thr = _brute_fpr_at_tpr(y, s, target)
        assert fpr == pytest.approx(ref_fpr) and thr == pytest.approx(ref_thr)


def test_tables_have_every_target_and_flag_unresolvable_fpr():
    y, s = _data(6, n=3000)
    n_neg = int((y == 0).sum())
    rows = metrics.tpr_at_fpr_table(y, s)
    assert [r["target_fpr"] for r in rows] == list(metrics.FPR_TARGETS)
    for row in rows:
        if row["target_fpr"] < 1 / n_neg:
            assert math.isnan(row["tpr"]) and "not resolvable" in row["status"] and f"{n_neg:,}" in row["status"]
        else:
            assert row["status"] == "ok" and row["tpr_low"] <= row["tpr"] <= row["tpr_high"]
    rows = metrics.fpr_at_tpr_table(y, s)
    assert [r["target_tpr"] for r in rows] == [0.99, 0.95, 0.90, 0.85, 0.80, 0.70, 0.50]
    fprs = [r["fpr"] for r in rows]
    assert fprs == sorted(fprs, reverse=True) and all(r["achieved_tpr"] >= r["target_tpr"] for r in rows)


def test_one_positive_in_1e5_negatives():
    rng = np.random.default_rng(7)
    s = rng.random(100_001)
    y = np.zeros(s.size, dtype=int)
    y[0] = 1
    top = np.sort(s[1:])[::-1]
    s[0] = 0.5 * (top[4] + top[5])  # exactly 5 of the 1e5 negatives outrank the lens
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.partial_auc(y, s, 1e-3) == pytest.approx(roc_auc_score(y, s, max_fpr=1e-3), abs=1e-12)
    # FPR 1e-4 allows 10 false positives: the lens is found, and the threshold spends the whole
    # budget (it sits at the 10th-highest negative score).
    assert metrics.tpr_at_fpr(y, s, 1e-4) == (1.0, top[9])
    # FPR 2e-5 allows 2 false positives: not enough, the lens is missed.
    tpr, thr = metrics.tpr_at_fpr(y, s, 2e-5)
    assert (tpr, thr) == (0.0, top[1])
    assert "not resolvable" in metrics.tpr_at_fpr_table(y, s, (5e-6,))[0]["status"]
    assert math.isnan(metrics.auc_standard_error(y, s))  # DeLong needs two positives


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_is_not_defined(label):
    y = np.full(50, label)
    s = np.linspace(0, 1, 50)
    assert "only one class" in metrics.undefined_reason(y, s)
    assert math.isnan(metrics.roc_auc(y, s)) and math.isnan(metrics.partial_auc(y, s, 0.01))
    assert all(math.isnan(v) for v in metrics.tpr_at_fpr(y, s, 0.01))
    assert all(math.isnan(v) for v in metrics.calibration_error(y, s))
    assert all(math.isnan(v) for v in metrics.delong_test(y, s, s[::-1]))
    assert metrics.tpr_at_fpr_table(y, s)[0]["status"].startswith("not defined")
    ece, mce = metrics.calibration_error(y, s, require_both_classes=False)
    assert ece == pytest.approx(np.mean(np.abs(label - s)), abs=0.04) and mce >= ece


def test_nan_scores_are_counted_excluded_and_reported():
    y, s = _data(8, n=500)
    s_nan = s.copy()
    s_nan[:17] = np.nan
    with pytest.warns(NaNScoresWarning, match="17 of 500"):
        auc = metrics.roc_auc(y, s_nan)
    assert auc == pytest.approx(roc_auc_score(y[17:], s[17:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNScoresWarning)
        assert metrics.rates_at_threshold(y, s_nan, 0.0)["n_nan"] == 17
    with pytest.raises(MetricInputError, match="17 NaN"):
        metrics.roc_auc(y, s_nan, nan_policy="raise")


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="has 3 values but labels has 4"):
        metrics.roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only 0"):
        metrics.roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(MetricInputError, match="max_fpr"):
        metrics.partial_auc([0, 1], [0.1, 0.2], 0.0)
    with pytest.raises(MetricInputError, match="outside \\[0, 1\\].*logits=True"):
        metrics.calibration_error([0, 1, 1], [-2.0, 0.5, 3.0])


def test_calibration_matches_sklearn_reliability_curve():
    rng = np.random.default_rng(9)
    p = rng.random(5000)
    y = (rng.random(5000) < p**1.5).astype(int)  # miscalibrated on purpose
    ece, mce = metrics.calibration_error(y, p, n_bins=15)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 16))[0]
    counts = counts[counts > 0]
    gap = np.abs(prob_true - prob_pred)
    assert ece == pytest.approx(np.sum(counts * gap) / p.size, rel=1e-9)
    assert mce == pytest.approx(gap.max(), rel=1e-9)
    logits = np.log(p / (1 - p))
    assert metrics.calibration_error(y, logits, logits=True) == pytest.approx((ece, mce))


def test_rates_at_threshold_match_sklearn():
    y, s = _data(10, n=800)
    r = metrics.rates_at_threshold(y, s, 0.6)
    pred = (s >= 0.6).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (tp, fp, tn, fn)
    assert r["precision"] == pytest.approx(precision_score(y, pred))
    assert r["recall"] == pytest.approx(recall_score(y, pred))
    assert r["fpr"] == pytest.approx(fp / (fp + tn))
    assert math.isnan(metrics.rates_at_threshold(y, s, s.max() + 1)["precision"])


@pytest.mark.parametrize("seed", range(6))
def test_bootstrap_fast_auc_equals_sklearn(seed):
    from dhs_eval._fastroc import fast_auc

    y, s = _data(seed, n=700, ties=seed % 2 == 1)
    for max_fpr in (None, 1e-3, 1e-2, 0.3):
        assert fast_auc(y, s, max_fpr) == pytest.approx(roc_auc_score(y, s, max_fpr=max_fpr), abs=1e-12)
