"""dhs_eval.stats.compare_proportions: Newcombe's interval against his published table, Fisher's
p-value against scipy's hypergeometric law enumerated by hand."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from dhs_eval.stats import compare_proportions

# Newcombe (1998), Stat. Med. 17, 873, Table II, method 10 (hybrid score): (k1, n1, k2, n2, low, high)
NEWCOMBE_TABLE_II = [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
    (10, 10, 0, 10, 0.6075, 1.0000),
]


@pytest.mark.parametrize(("k1", "n1", "k2", "n2", "low", "high"), NEWCOMBE_TABLE_II)
def test_newcombe_hybrid_score_interval_matches_the_published_table(k1, n1, k2, n2, low, high):
    out = compare_proportions(k1, n1, k2, n2)
    assert out["status"] == "ok" and out["difference"] == pytest.approx(k1 / n1 - k2 / n2)
    assert out["low"] == pytest.approx(low, abs=6e-5) and out["high"] == pytest.approx(high, abs=6e-5)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(3, 12, 9, 11), (15, 500, 17, 500), (0, 8, 5, 8), (7, 7, 2, 9)])
def test_fisher_p_value_is_the_sum_of_no_more_probable_tables(k1, n1, k2, n2):
    total, successes = n1 + n2, k1 + k2
    law = stats.hypergeom(total, successes, n1)
    observed = law.pmf(k1)
    tables = range(max(0, successes - n2), min(successes, n1) + 1)
    expected = sum(law.pmf(x) for x in tables if law.pmf(x) <= observed * (1 + 1e-7))
    assert compare_proportions(k1, n1, k2, n2)["p_value"] == pytest.approx(expected, rel=1e-9)


def test_empty_sample_is_not_defined():
    out = compare_proportions(0, 0, 3, 10)
    assert out["status"].startswith("not defined") and math.isnan(out["difference"]) and math.isnan(out["p_value"])
