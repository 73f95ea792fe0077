"""Losses against closed forms and torchvision's reference focal loss; registry contract tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from dhs_core import plugins

OURS = sorted(n for n, c in plugins.components("loss").items() if c.distribution == "dhs-models")

LOGITS = torch.tensor([2.0, -1.0, 0.3, -3.0, 5.0, 0.0])
LABELS = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 0.0])
TIERS = ["A", None, "B", "B", None, None]


def make(name, **options):
    return plugins.build("loss", {"name": name, **options})


def bce_closed_form(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    p = 1 / (1 + np.exp(-x))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_bce_unweighted_is_the_mean_cross_entropy():
    got = float(make("bce")(LOGITS, LABELS))
    assert got == pytest.approx(bce_closed_form(LOGITS, LABELS).mean(), rel=1e-6)


def test_bce_sample_weight_is_a_weighted_mean():
    got = float(make("bce", weighting="sample_weight")(LOGITS, LABELS, sample_weight=WEIGHTS))
    w = WEIGHTS.numpy()
    assert got == pytest.approx((w * bce_closed_form(LOGITS, LABELS)).sum() / w.sum(), rel=1e-6)
    # scale invariance of the weighted mean
    got2 = float(make("bce", weighting="sample_weight")(LOGITS, LABELS, sample_weight=7 * WEIGHTS))
    assert got2 == pytest.approx(got, rel=1e-6)


def test_bce_tier_weights():
    loss = make("bce", weighting="tier", tier_weights={"A": 1.0, "B": 0.5})
    w = np.array([1.0, 1.0, 0.5, 0.5, 1.0, 1.0])  # untiered (non-lenses) weigh 1
    expected = (w * bce_closed_form(LOGITS, LABELS)).sum() / w.sum()
    assert float(loss(LOGITS, LABELS, tier=TIERS)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="tier_weights"):
        loss(LOGITS, LABELS, tier=["C", None, None, None, None, None])


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (1.0, 0.6), (0.0, 0.25), (2.0, None)])
def test_focal_matches_torchvision(gamma, alpha):
    got = float(make("focal", gamma=gamma, alpha=alpha)(LOGITS, LABELS))
    ref = sigmoid_focal_loss(LOGITS, LABELS, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="mean")
    assert got == pytest.approx(float(ref), rel=1e-6)


def test_focal_without_focusing_or_balancing_is_bce():
    assert float(make("focal", gamma=0.0, alpha=None)(LOGITS, LABELS)) == pytest.approx(
        float(make("bce")(LOGITS, LABELS)), rel=1e-6)


def test_focal_is_stable_for_extreme_logits():
    x = torch.tensor([80.0, -80.0, 80.0], requires_grad=True)
    loss = make("focal")(x, torch.tensor([0.0, 1.0, 1.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("weighting", ["none", "sample_weight", "tier"])
def test_loss_contract(name, weighting):
    loss_fn = make(name, weighting=weighting)
    x = LOGITS.clone().requires_grad_(True)
    loss = loss_fn(x.reshape(-1, 1), LABELS, sample_weight=WEIGHTS, tier=TIERS)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    if weighting == "sample_weight":
        assert x.grad[5] == 0  # a zero-weight sample does not train
    # an all-zero-weight batch gives 0, not NaN
    zero = loss_fn(LOGITS, LABELS, sample_weight=torch.zeros(6), tier=TIERS)
    assert torch.isfinite(zero)
