"""Tiny in-memory datasets and models for trainer tests (contract-3 dicts)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset


class ToyLenses(Dataset):
    """Positives carry a bright central ring; negatives are noise. Deterministic per index."""

    def __init__(self, n: int = 32, px: int = 16, seed: int = 0, tiers: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, px, px, generator=g) * 0.5
        self.labels = (torch.arange(n) % 2).float()
        yy, xx = torch.meshgrid(torch.arange(px), torch.arange(px), indexing="ij")
        r = ((yy - px / 2) ** 2 + (xx - px / 2) ** 2).sqrt()
        ring = ((r > px / 5) & (r < px / 3)).float()
        self.images[self.labels == 1] += ring
        self.ids = [f"g{seed}_{i}" for i in range(n)]
        self.tiers = ["A" if i % 4 == 1 else "B" if i % 2 else None for i in range(n)] if tiers else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "weight": torch.tensor(1.0), "index": i,
                "meta": torch.zeros(0), "galaxy_id": self.ids[i]}


class LinearNet(nn.Module):
    """A BatchNorm-free backbone + head, so accumulated and full batches give the same gradient."""

    def __init__(self, px: int = 16) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * px * px, 8), nn.Tanh())
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
