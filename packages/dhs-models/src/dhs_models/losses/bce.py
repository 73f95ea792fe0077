"""Binary cross-entropy on logits, with optional per-sample weighting."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dhs_models.losses.configs import BCEConfig
from dhs_models.losses.weighting import WeightedLoss


class BCELoss(WeightedLoss):
    """Binary cross-entropy with logits per sample."""

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


def build_bce(config: BCEConfig) -> BCELoss:
    """Binary cross-entropy with logits; weighting none | sample_weight | tier."""
    return BCELoss(config)
