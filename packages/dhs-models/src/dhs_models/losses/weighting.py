"""Per-sample loss weights shared by every loss: none, manifest ``sample_weight``, or lens tier.

A weighted loss is the per-sample weighted *mean* ``sum(w_i l_i) / sum(w_i)``: changing every
weight by the same factor leaves the loss (and so the effective learning rate) unchanged, and a
batch of only down-weighted Tier-B lenses still contributes a loss on the usual scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dhs_models.losses.configs import WeightedLossConfig


def sample_weights(
    config: WeightedLossConfig,
    n: int,
    *,
    sample_weight: torch.Tensor | None = None,
    tier: Sequence[str | None] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Per-sample weights (N,) for ``config.weighting``, or None for an unweighted mean."""
    if config.weighting == "none":
        return None
    if config.weighting == "sample_weight":
        if sample_weight is None:
            raise ValueError("loss weighting 'sample_weight' needs the batch's sample_weight values")
        return sample_weight.reshape(n).float()
    if tier is None:
        raise ValueError("loss weighting 'tier' needs the batch's tier values")
    unknown = sorted({t for t in tier if t not in (None, "") and t not in config.tier_weights})
    if unknown:
        raise ValueError(
            f"loss weighting 'tier': tiers {unknown} have no entry in tier_weights {config.tier_weights}"
        )
    values = [config.untiered_weight if t in (None, "") else config.tier_weights[t] for t in tier]
    return torch.tensor(values, dtype=torch.float32, device=device)


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    weights = weights.to(per_sample.dtype)
    # clamp: a batch whose weights are all zero contributes zero, not NaN
    return (per_sample * weights).sum() / weights.sum().clamp_min(torch.finfo(per_sample.dtype).tiny)


class WeightedLoss:
    """``loss(logits, labels, sample_weight=None, tier=None) -> scalar``: a per-sample loss
    (from :meth:`per_sample`) reduced by the configured weighting's weighted mean."""

    def __init__(self, config: WeightedLossConfig) -> None:
        self.config = config

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

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
        w = sample_weights(self.config, logits.shape[0], sample_weight=sample_weight, tier=tier,
                           device=logits.device)
        return weighted_mean(self.per_sample(logits, labels), w)
