"""Feature-space diagnostics against closed forms and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from dhs_eval.diagnostics.feature_space import frechet_distance, linear_probe_auc


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    shift = np.array([1.0, -2.0, 0.5])
    # same covariance: the distance is the squared mean offset
    res = frechet_distance(a, a + shift)
    assert res["distance"] == pytest.approx(np.sum(shift**2), rel=1e-6)
    # isotropic Gaussians N(0, s1^2 I) and N(0, s2^2 I): dim * (s1 - s2)^2
    b = rng.normal(size=(20000, 3)) * 2.0
    a2 = rng.normal(size=(20000, 3))
    assert frechet_distance(a2, b)["distance"] == pytest.approx(3 * (2.0 - 1.0) ** 2, rel=0.05)
    cov = np.cov(a, rowvar=False)
    assert np.allclose(linalg.sqrtm(cov @ cov).real, cov, atol=1e-8)


def test_frechet_distance_not_computable_when_n_le_dim():
    res = frechet_distance(np.zeros((5, 8)), np.ones((20, 8)))
    assert math.isnan(res["distance"]) and res["status"].startswith("not computable")


def test_linear_probe_separates_shifted_groups_and_not_identical_ones():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 4))
    far = linear_probe_auc(a, rng.normal(size=(300, 4)) + [3, 0, 0, 0])
    same = linear_probe_auc(a, rng.normal(size=(300, 4)))
    assert far["auc"] > 0.95 and abs(same["auc"] - 0.5) < 0.1
    assert linear_probe_auc(a[:3], a[3:10])["status"].startswith("not computable")
