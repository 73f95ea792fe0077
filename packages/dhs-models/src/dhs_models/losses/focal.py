"""Focal loss (Lin et al. 2017): down-weights easy examples, for the extreme class imbalance of
lens searches (~1 lens per 10^3-10^4 galaxies)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dhs_models.losses.configs import FocalConfig
from dhs_models.losses.weighting import WeightedLoss


class FocalLoss(WeightedLoss):
    """Focal loss per sample (Lin et al. 2017)."""

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # log p_t from BCE-with-logits is stable for large |logit|, unlike log(sigmoid(x))
        ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * labels + (1 - p) * (1 - labels)
        loss = ce * (1 - p_t) ** self.config.gamma
        if self.config.alpha is not None:
            a = self.config.alpha
            loss = (a * labels + (1 - a) * (1 - labels)) * loss
        return loss


def build_focal(config: FocalConfig) -> FocalLoss:
    """Focal loss (gamma, alpha) with optional per-sample weighting."""
    return FocalLoss(config)
