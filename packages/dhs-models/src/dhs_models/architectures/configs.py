"""Configs of the built-in architectures (torch-free, so registering them imports no torch).

Every architecture accepts the options of :class:`ArchitectureConfig` (an optional metadata
fusion branch); each module under :mod:`dhs_models.architectures` builds the network its config
describes.
"""

from __future__ import annotations

from pydantic import Field

from dhs_core import ComponentConfig


class MetadataFusionConfig(ComponentConfig):
    """A small MLP over per-cutout metadata, concatenated to the image features before the head."""

    # manifest columns fed to the MLP, in this order (e.g. ["psfsize_r", "psfdepth_r", "ebv"])
    columns: tuple[str, ...] = Field(min_length=1)
    # width of the MLP's hidden and output layers
    hidden: int = Field(default=32, ge=1)


class ArchitectureConfig(ComponentConfig):
    """Options every architecture accepts."""

    # optional metadata fusion branch; None = image only
    metadata: MetadataFusionConfig | None = None


class BottleneckedResNetConfig(ArchitectureConfig):
    """Compact pre-activation bottleneck ResNet (CMU DeepLens style), trained from scratch."""

    # channels after the stem; stage widths are base_ch * (1, 2, 4, 8)
    base_ch: int = Field(default=27, ge=4)
    # bottleneck units per stage (four stages)
    blocks: tuple[int, int, int, int] = (5, 5, 4, 2)
    # dropout before the final linear layer
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class ConvNeXtTinyConfig(ArchitectureConfig):
    """torchvision ConvNeXt-Tiny."""

    # "imagenet" (torchvision's weights, from the torch cache) or a local weights file path
    pretrained: str | bool | None = None
    # dropout before the final Linear(768, 1)
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # stochastic depth probability (torchvision default 0.1)
    stochastic_depth: float = Field(default=0.1, ge=0.0, lt=1.0)


class EfficientNetV2SConfig(ArchitectureConfig):
    """torchvision EfficientNetV2-S."""

    # "imagenet" (torchvision's weights, from the torch cache) or a local weights file path
    pretrained: str | bool | None = None
    # dropout before the final Linear(1280, 1), as in torchvision's classifier
    head_dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    # stochastic depth probability of the MBConv blocks (torchvision default)
    stochastic_depth: float = Field(default=0.2, ge=0.0, lt=1.0)


class ResNet18Config(ArchitectureConfig):
    """torchvision ResNet-18."""

    # 64 px stamps: 3x3 stride-1 first convolution and no max-pool, so the 64 px stamp is not
    # reduced to 16 px before the first residual block (the ImageNet stem divides by 4)
    small_input: bool = False
    # "imagenet" (torchvision's weights, from the torch cache) or a local weights file path;
    # None = random initialisation
    pretrained: str | bool | None = None
    # dropout before the final linear layer
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class TimmConfig(ArchitectureConfig):
    """A timm model used as a feature extractor."""

    # timm model name, e.g. "efficientnet_b0", "resnet26d", "convnext_atto"
    arch: str = Field(min_length=1)
    # local timm weights file for `arch`; its classifier weights are ignored
    pretrained: str | bool | None = None
    # dropout before the final linear layer
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
