"""Hook implementations of dhs-models: this module only wires hooks."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_architectures(register):
    from dhs_models.architectures.bottlenecked_resnet import (
        BottleneckedResNetConfig,
        build_bottlenecked_resnet,
    )
    from dhs_models.architectures.convnext_tiny import ConvNeXtTinyConfig, build_convnext_tiny
    from dhs_models.architectures.efficientnet_v2_s import EfficientNetV2SConfig, build_efficientnet_v2_s
    from dhs_models.architectures.resnet18 import ResNet18Config, build_resnet18
    from dhs_models.architectures.timm_model import TimmConfig, build_timm

    register("resnet18", build_resnet18, config=ResNet18Config)
    register("efficientnet_v2_s", build_efficientnet_v2_s, config=EfficientNetV2SConfig)
    register("convnext_tiny", build_convnext_tiny, config=ConvNeXtTinyConfig)
    register("bottlenecked_resnet", build_bottlenecked_resnet, config=BottleneckedResNetConfig)
    register("timm", build_timm, config=TimmConfig)


@hookimpl
def register_losses(register):
    from dhs_models.losses.bce import BCEConfig, build_bce
    from dhs_models.losses.focal import FocalConfig, build_focal

    register("bce", build_bce, config=BCEConfig)
    register("focal", build_focal, config=FocalConfig)


@hookimpl
def register_stages(register):
    from dhs_models.stage import TrainStage

    register("train", TrainStage())


@hookimpl
def register_evaluators(register):
    from dhs_models.diagnostics.arc_morphology import ArcMorphologyConfig, ArcMorphologyEvaluator
    from dhs_models.diagnostics.feature_space import FeatureSpaceConfig, FeatureSpaceEvaluator

    register("feature_space", FeatureSpaceEvaluator, config=FeatureSpaceConfig)
    register("arc_morphology", ArcMorphologyEvaluator, config=ArcMorphologyConfig)
