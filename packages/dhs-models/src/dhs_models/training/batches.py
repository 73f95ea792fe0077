"""Moving batches of dhs-data sample dicts (from CutoutDataset) through a model, and validation metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

# the batched fast path of dhs-data stores (one read per shard per batch); also takes lists of
# per-sample dicts, so any map-style dataset works
from dhs_data.datasets import collate

#: the operating point of a survey-scale search: ~1 false positive per 1000 non-lenses
VAL_FPR = 1e-3


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def forward(model: nn.Module, batch: Mapping[str, Any], device: torch.device, channels_last: bool) -> torch.Tensor:
    """Logits (N,) for a batch; the metadata vector is passed only to models that fuse it."""
    image = batch["image"].to(device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    if getattr(unwrap(model), "metadata_columns", ()):
        return model(image, batch["meta"].to(device, non_blocking=True)).reshape(-1)
    return model(image).reshape(-1)


def batch_tiers(batch: Mapping[str, Any], tier_of: Mapping[str, str | None] | None) -> list[str | None] | None:
    """Lens tier of each sample: from the batch when the dataset gives it, else from the manifest."""
    if "tier" in batch:
        return list(batch["tier"])
    if tier_of is None:
        return None
    return [tier_of.get(g) for g in batch["galaxy_id"]]


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
    num_workers: int = 0,
    autocast: Any = None,
    tier_of: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Logits of every sample in order, with labels, weights, tiers and galaxy ids."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    logits, labels, weights, ids, tiers = [], [], [], [], []
    for batch in loader:
        if autocast is not None:
            with autocast():
                out = forward(model, batch, device, channels_last)
        else:
            out = forward(model, batch, device, channels_last)
        logits.append(out.float().cpu())
        labels.append(batch["label"].float())
        weights.append(batch["weight"].float())
        ids.extend(batch["galaxy_id"])
        t = batch_tiers(batch, tier_of)
        tiers.extend(t if t is not None else [None] * len(out))
    cat = (lambda xs: torch.cat(xs)) if logits else (lambda xs: torch.zeros(0))
    return {"logits": cat(logits), "labels": cat(labels), "weights": cat(weights), "galaxy_id": ids, "tier": tiers}


def validation_metrics(pred: Mapping[str, Any], loss_fn: Any) -> dict[str, float]:
    """Validation loss (same loss and weighting as training), AUC, pAUC(FPR<=1e-3), TPR@FPR=1e-3.

    Ranking metrics use the logits: sigmoid is monotone but saturates to exactly 1.0 in float32
    for confident lenses, which would create artificial ties.
    """
    from dhs_eval.metrics import partial_auc, roc_auc, tpr_at_fpr

    logits, labels = pred["logits"], pred["labels"]
    if len(logits) == 0:
        return {"val_loss": math.nan, "val_auc": math.nan, "val_pauc": math.nan, "val_tpr_at_fpr": math.nan}
    tiers = pred["tier"] if any(t is not None for t in pred["tier"]) else None
    loss = float(loss_fn(logits, labels, sample_weight=pred["weights"], tier=tiers))
    y = labels.numpy().astype(np.int64)
    s = logits.double().numpy()
    return {
        "val_loss": loss,
        "val_auc": roc_auc(y, s),
        "val_pauc": partial_auc(y, s, VAL_FPR),
        "val_tpr_at_fpr": tpr_at_fpr(y, s, VAL_FPR).value,
    }
