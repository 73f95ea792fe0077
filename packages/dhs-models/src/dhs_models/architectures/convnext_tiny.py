"""ConvNeXt-Tiny (Liu et al. 2022, torchvision): 768-d pooled, layer-normalised features and a
custom one-logit head."""

from __future__ import annotations

from torch import nn

from dhs_models.architectures.base import (
    LensClassifier,
    check_pretrained,
    load_into,
    load_state_dict_file,
)
from dhs_models.architectures.configs import ConvNeXtTinyConfig


def build_convnext_tiny(config: ConvNeXtTinyConfig) -> LensClassifier:
    """torchvision ConvNeXt-Tiny, 3 channels in, one logit out."""
    # imported here so registering plugins (e.g. `dhs validate`) does not load torchvision
    from torchvision.models import convnext_tiny

    net = convnext_tiny(weights=None, stochastic_depth_prob=config.stochastic_depth)
    path = check_pretrained(config.pretrained, "convnext_tiny")
    if path is not None:
        load_into(net, load_state_dict_file(path, "convnext_tiny"), path, "convnext_tiny")
    # torchvision's classifier is LayerNorm2d -> Flatten -> Linear(768, 1000); keep the pretrained
    # LayerNorm and Flatten in the backbone so it emits the 768-d feature vector
    net.classifier = nn.Sequential(net.classifier[0], net.classifier[1])
    return LensClassifier(net, 768, head_dropout=config.head_dropout, metadata=config.metadata)
