"""Any timm model by name (``arch``), 3 channels in, one logit out; nothing is downloaded."""

from __future__ import annotations

from dhs_core.errors import UserError
from dhs_models.architectures.base import (
    LensClassifier,
    check_pretrained,
    load_state_dict_file,
)
from dhs_models.architectures.configs import TimmConfig


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
