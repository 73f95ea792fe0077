"""Any timm model by name (``arch``), 3 channels in, one logit out; nothing is downloaded."""

from __future__ import annotations

from pydantic import Field

from dhs_core.errors import UserError
from dhs_models.architectures.base import (
    ArchitectureConfig,
    LensClassifier,
    check_pretrained,
    load_state_dict_file,
)


class TimmConfig(ArchitectureConfig):
    """A timm model used as a feature extractor."""

    # timm model name, e.g. "efficientnet_b0", "resnet26d", "convnext_atto"
    arch: str = Field(min_length=1)
    # local timm weights file for `arch`; its classifier weights are ignored
    pretrained: str | bool | None = None
    # dropout before the final linear layer
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


def build_timm(config: TimmConfig) -> LensClassifier:
    """timm model ``arch`` with its classifier removed and a one-logit head."""
    import timm

    if not timm.is_model(config.arch):
        close = timm.list_models(f"*{config.arch.split('_')[0]}*")[:12]
        raise UserError(
            f"model.arch = {config.arch!r}: timm has no such model"
            + (f"; similar names: {', '.join(close)}" if close else "; see timm.list_models()")
        )
    # num_classes=0 strips the classifier and returns pooled features; pretrained=False keeps
    # timm from reaching the network
    net = timm.create_model(config.arch, pretrained=False, num_classes=0, in_chans=3)
    path = check_pretrained(config.pretrained, f"timm:{config.arch}")
    if path is not None:
        state = load_state_dict_file(path, f"timm:{config.arch}")
        missing, unexpected = net.load_state_dict(state, strict=False)
        head_keys = {k for k in unexpected if k.split(".")[0] in ("fc", "classifier", "head")}
        if missing or set(unexpected) - head_keys:
            raise UserError(
                f"model.pretrained = {str(path)!r}: its weights do not fit timm model {config.arch!r} "
                f"(missing {len(missing)} keys, unexpected {len(set(unexpected) - head_keys)})"
            )
    return LensClassifier(net, net.num_features, head_dropout=config.head_dropout, metadata=config.metadata)
