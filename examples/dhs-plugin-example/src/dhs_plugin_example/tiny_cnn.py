"""A deliberately small CNN lens finder: three conv blocks, global pooling, one logit.

It trains in seconds on a CPU, which makes it a useful smoke-test architecture for new specs.
"""

from __future__ import annotations

from pydantic import Field

from dhs_core import ComponentConfig


class TinyCNNConfig(ComponentConfig):
    """Options of the example architecture."""

    # channels of the first block; each following block doubles them
    width: int = Field(8, ge=1, le=256)
    # dropout before the final linear layer
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


def build_tiny_cnn(config: TinyCNNConfig):
    """Three conv-BN-ReLU-pool blocks, global average pooling, one logit."""
    # torch is imported here, not at module import, so `dhs plugins` stays fast.
    from torch import nn

    w = config.width
    layers = []
    c_in = 3
    for c_out in (w, 2 * w, 4 * w):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(config.dropout),
        nn.Linear(c_in, 1),
    )
