"""Binary cross-entropy on logits, with optional per-sample weighting."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dhs_models.losses.weighting import WeightedLossConfig, sample_weights, weighted_mean


class BCEConfig(WeightedLossConfig):
    """BCEWithLogits, (weighted) mean over the batch."""


class BCELoss:
    """``loss(logits, labels, sample_weight=None, tier=None) -> scalar``."""

    def __init__(self, config: BCEConfig) -> None:
        self.config = config

    def __call__(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        *,
        sample_weight: torch.Tensor | None = None,
        tier: Sequence[str | None] | None = None,
    ) -> torch.Tensor:
        logits = logits.reshape(-1).float()
        labels = labels.reshape(-1).to(logits.dtype)
        per_sample = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        w = sample_weights(self.config, logits.shape[0], sample_weight=sample_weight, tier=tier,
                           device=logits.device)
        return weighted_mean(per_sample, w)


def build_bce(config: BCEConfig) -> BCELoss:
    """Binary cross-entropy with logits; weighting none | sample_weight | tier."""
    return BCELoss(config)
