"""ResNet-18 (He et al. 2016, torchvision) with a one-logit head: 11,177,025 parameters."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from dhs_models.architectures.base import (
    ArchitectureConfig,
    LensClassifier,
    check_pretrained,
    load_into,
    load_state_dict_file,
)


class ResNet18Config(ArchitectureConfig):
    """torchvision ResNet-18."""

    # 64 px stamps: 3x3 stride-1 first convolution and no max-pool, so the 64 px stamp is not
    # reduced to 16 px before the first residual block (the ImageNet stem divides by 4)
    small_input: bool = False
    # local torchvision ImageNet weights file (resnet18-f37072fd.pth); None = random initialisation
    pretrained: str | bool | None = None
    # dropout before the final linear layer
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


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
