"""ResNet-18 (He et al. 2016, torchvision) with a one-logit head: 11,177,025 parameters."""

from __future__ import annotations

from torch import nn

from dhs_models.architectures.base import (
    LensClassifier,
    check_pretrained,
    load_into,
    load_state_dict_file,
)
from dhs_models.architectures.configs import ResNet18Config


def build_resnet18(config: ResNet18Config) -> LensClassifier:
    """torchvision ResNet-18, 3 channels in, one logit out."""
    # imported here so registering plugins (e.g. `dhs validate`) does not load torchvision
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    path = check_pretrained(config.pretrained, "resnet18")
    if path is not None:
        load_into(net, load_state_dict_file(path, "resnet18"), path, "resnet18")
    if config.small_input:
        # a fresh 3x3 stem; pretrained 7x7 filters do not carry over
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return LensClassifier(net, feature_dim, head_dropout=config.head_dropout, metadata=config.metadata)
