"""Selection-function statistics and spec checks: completeness posteriors against scipy and closed
forms, the target-FPR threshold against a brute-force count, bins, and bad [selection_function] specs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import dhs_core
from dhs_core import plugins
from dhs_core.errors import SpecError
from dhs_core.testing import check_component, undocumented_fields
from dhs_inject.selection.config import SelectionFunctionConfig, ThetaEGrid
from dhs_inject.selection.statistics import bin_index, completeness_posterior, threshold_at_fpr

STAGES = {n: c for n, c in plugins.components("stage").items() if c.distribution == "dhs-inject"}


def test_completeness_matches_scipy_beta_and_closed_forms():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 500, 200)
    k = rng.integers(0, n + 1)
    out = completeness_posterior(k, n)
    a, b = k + 0.5, n - k + 0.5
    np.testing.assert_allclose(out["completeness"], stats.beta(a, b).median(), rtol=1e-10)
    for tag, level in (("68", 0.68), ("95", 0.95)):
        lo, hi = stats.beta.interval(level, a, b)
        np.testing.assert_allclose(out[f"completeness_low_{tag}"], lo, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(out[f"completeness_high_{tag}"], hi, rtol=1e-10, atol=1e-14)
    # closed form: k = n/2 gives a symmetric Beta(a, a): median 1/2, interval symmetric about it
    half = completeness_posterior(np.array([5, 50]), np.array([10, 100]))
    np.testing.assert_allclose(half["completeness"], 0.5, atol=1e-12)
    np.testing.assert_allclose(half["completeness_low_95"] + half["completeness_high_95"], 1.0, atol=1e-12)
    # closed form: n = 1, k = 0 gives Beta(1/2, 3/2), whose CDF is (2/pi)(arcsin(sqrt x) + sqrt(x (1 - x)))
    med = completeness_posterior(np.array([0]), np.array([1]))["completeness"][0]
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


def test_theta_e_grid_values_include_stop():
    assert ThetaEGrid(start=0.5, stop=1.5, step=0.25).values() == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert ThetaEGrid(start=0.3, stop=0.9, step=0.3).values() == [0.3, 0.6, 0.9]


@pytest.mark.parametrize("section, where", [
    ({"theta_e": {"start": 0.5, "stop": 2.0, "step": 0.0}}, "step"),
    ({"theta_e": {"start": 0.5, "stop": 2.0, "step": -0.5}}, "step"),
    ({"theta_e": {"start": 2.0, "stop": 0.5, "step": 0.5}}, "below start"),
    ({"source_mag_edges": [24.0]}, "at least two edges"),
    ({"source_mag_edges": [24.0, 24.0]}, "increase strictly"),
    ({"psfsize_r_edges": []}, "at least two edges"),
    ({"psfdepth_r_edges": [400.0, 100.0]}, "increase strictly"),
    ({"per_cell": 0}, "per_cell"),
    ({"target_fpr": 1e-3, "threshold": 0.5}, "not both"),
    ({"injector": {"name": "no_such_injector"}}, "model1"),
])
def test_bad_selection_function_section_is_a_spec_error(tmp_path, section, where):
    spec = {"run": {"name": "bad", "seed": 1, "out_dir": str(tmp_path / "run")}, "selection_function": section}
    with pytest.raises(SpecError) as info:
        dhs_core.run(spec)
    assert "selection_function" in str(info.value) and where in str(info.value)
    assert not (tmp_path / "run" / "selection_function").exists()


def test_default_threshold_rule():
    assert SelectionFunctionConfig().target_fpr == 1e-3 and SelectionFunctionConfig().threshold is None
    fixed = SelectionFunctionConfig(threshold=0.7)
    assert fixed.target_fpr is None and fixed.threshold == 0.7


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_contract(name):
    comp = STAGES[name]
    check_component(comp)
    for section in comp.impl.sections.values():
        assert not undocumented_fields(section.type), undocumented_fields(section.type)
    assert comp.impl.trigger in comp.impl.sections
