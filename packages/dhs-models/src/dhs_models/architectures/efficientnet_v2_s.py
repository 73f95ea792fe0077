"""EfficientNetV2-S (Tan & Le 2021, torchvision) with head Dropout(0.2) -> Linear(1280, 1).

With that head the network has exactly 20,178,769 parameters, the count of the published runs.
"""

from __future__ import annotations

from torch import nn

from dhs_models.architectures.base import (
    LensClassifier,
    check_pretrained,
    load_into,
    load_state_dict_file,
)
from dhs_models.architectures.configs import EfficientNetV2SConfig


def build_efficientnet_v2_s(config: EfficientNetV2SConfig) -> LensClassifier:
    """torchvision EfficientNetV2-S, 3 channels in, one logit out."""
    # imported here so registering plugins (e.g. `dhs validate`) does not load torchvision
    from torchvision.models import efficientnet_v2_s

    net = efficientnet_v2_s(weights=None, stochastic_depth_prob=config.stochastic_depth)
    path = check_pretrained(config.pretrained, "efficientnet_v2_s")
    if path is not None:
        load_into(net, load_state_dict_file(path, "efficientnet_v2_s"), path, "efficientnet_v2_s")
    feature_dim = net.classifier[-1].in_features  # 1280
    net.classifier = nn.Identity()
    return LensClassifier(net, feature_dim, head_dropout=config.head_dropout, metadata=config.metadata)
