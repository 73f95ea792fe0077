"""Hook implementations of dhs-models: this module only wires hooks.

Implementations are registered as ``"module:attr"`` strings and imported on first use; the
Configs come from torch-free modules, so listing plugins or validating a spec imports no torch.
"""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_architectures(register):
    from dhs_models.architectures import configs as c

    arch = "dhs_models.architectures"
    register("resnet18", f"{arch}.resnet18:build_resnet18", config=c.ResNet18Config,
             summary="torchvision ResNet-18, 3 channels in, one logit out.")
    register("efficientnet_v2_s", f"{arch}.efficientnet_v2_s:build_efficientnet_v2_s", config=c.EfficientNetV2SConfig,
             summary="torchvision EfficientNetV2-S, 3 channels in, one logit out.")
    register("convnext_tiny", f"{arch}.convnext_tiny:build_convnext_tiny", config=c.ConvNeXtTinyConfig,
             summary="torchvision ConvNeXt-Tiny, 3 channels in, one logit out.")
    register("bottlenecked_resnet", f"{arch}.bottlenecked_resnet:build_bottlenecked_resnet",
             config=c.BottleneckedResNetConfig,
             summary="Compact pre-activation bottleneck ResNet (Lanusse et al. 2018 style), one logit out.")
    register("timm", f"{arch}.timm_model:build_timm", config=c.TimmConfig,
             summary="timm model ``arch`` with its classifier removed and a one-logit head.")


@hookimpl
def register_losses(register):
    from dhs_models.losses.configs import BCEConfig, FocalConfig

    register("bce", "dhs_models.losses.bce:build_bce", config=BCEConfig,
             summary="Binary cross-entropy with logits; weighting none | sample_weight | tier.")
    register("focal", "dhs_models.losses.focal:build_focal", config=FocalConfig,
             summary="Focal loss (gamma, alpha) with optional per-sample weighting.")


@hookimpl
def register_stages(register):
    from dhs_models.score_stage import ScoreStage
    from dhs_models.stage import TrainStage

    register("train", TrainStage())
    register("score", ScoreStage())


@hookimpl
def register_commands(app):
    from dhs_models.score_cli import register

    register(app)
