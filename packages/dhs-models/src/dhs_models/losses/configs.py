"""Configs of the built-in losses (torch-free, so registering them imports no torch).

Every loss accepts the weighting options of :class:`WeightedLossConfig`; see
:mod:`dhs_models.losses.weighting` for how the weights enter the loss.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dhs_core import ComponentConfig


class WeightedLossConfig(ComponentConfig):
    """Weighting options every loss accepts."""

    # none: plain mean; sample_weight: the manifest's sample_weight column; tier: tier_weights[tier]
    weighting: Literal["none", "sample_weight", "tier"] = "none"
    # weight per lens tier (used with weighting = "tier"), e.g. {A = 1.0, B = 0.5}
    tier_weights: dict[str, float] = Field(default_factory=lambda: {"A": 1.0, "B": 0.5})
    # weight of samples without a tier (non-lenses, tier null) under weighting = "tier"
    untiered_weight: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _check_tiers(self) -> WeightedLossConfig:
        bad = {k: v for k, v in self.tier_weights.items() if v < 0}
        if bad:
            raise ValueError(f"tier_weights must be >= 0; got {bad}")
        return self


class BCEConfig(WeightedLossConfig):
    """BCEWithLogits, (weighted) mean over the batch."""


class FocalConfig(WeightedLossConfig):
    """FL = -alpha_t (1 - p_t)^gamma log(p_t), (weighted) mean over the batch."""

    # focusing parameter; 0 reduces to (alpha-balanced) binary cross-entropy
    gamma: float = Field(default=2.0, ge=0.0)
    # weight of the positive class (1 - alpha for negatives); None = no class balancing
    alpha: float | None = Field(default=0.25, ge=0.0, le=1.0)
