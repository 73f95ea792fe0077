"""What every architecture shares: a backbone producing a feature vector, an optional metadata
branch, and a head producing one logit.

Splitting backbone and head is what lets the trainer freeze a pretrained backbone for the first
epochs (head-only training) and what lets metadata fusion work the same way for every network:
the metadata vector (e.g. psfsize_r, psfdepth_r, ebv from the manifest) goes through a small MLP
whose output is concatenated to the image features before the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dhs_core.errors import UserError
from dhs_models.architectures.configs import MetadataFusionConfig


def _metadata_mlp(n_in: int, hidden: int) -> nn.Module:
    # Metadata columns live on wildly different scales (psfdepth ~1e2-1e4, ebv ~1e-2); a
    # BatchNorm on the raw vector standardises each column with running statistics, so no
    # hand-tuned normalisation has to travel with the checkpoint.
    return nn.Sequential(
        nn.BatchNorm1d(n_in),
        nn.Linear(n_in, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
    )


class LensClassifier(nn.Module):
    """backbone(image) -> features; [features, mlp(meta)] -> head -> one logit per cutout."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        head_dropout: float = 0.0,
        metadata: MetadataFusionConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.metadata_columns: tuple[str, ...] = tuple(metadata.columns) if metadata else ()
        self.metadata_mlp = _metadata_mlp(len(metadata.columns), metadata.hidden) if metadata else None
        n_head = feature_dim + (metadata.hidden if metadata else 0)
        linear = nn.Linear(n_head, 1)
        self.head = nn.Sequential(nn.Dropout(head_dropout), linear) if head_dropout > 0 else linear

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        features = self.backbone(image)
        if self.metadata_mlp is not None:
            if meta is None:
                raise ValueError(
                    f"this model fuses metadata columns {list(self.metadata_columns)}; call model(image, meta) "
                    "with meta of shape (N, n_columns)"
                )
            features = torch.cat([features, self.metadata_mlp(meta.to(features.dtype))], dim=1)
        return self.head(features)


#: torchvision's ImageNet weights per architecture: the name of its weights enum (the
#: IMAGENET1K_V1 entry is the file the published runs started from)
TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "efficientnet_v2_s": "EfficientNet_V2_S_Weights",
                       "convnext_tiny": "ConvNeXt_Tiny_Weights"}


def check_pretrained(pretrained: Any, arch: str) -> Path | None:
    """Resolve the ``pretrained`` option to a local weights file, or explain why it cannot be used.

    ``"imagenet"`` (or ``true``) names torchvision's ImageNet weights of ``arch``: the file in the
    torch cache (``$TORCH_HOME/hub/checkpoints``), downloaded there the first time by a user with
    internet; offline, the error names the file, its URL and where to place it. A path names a
    local weights file.
    """
    if pretrained in (None, False, ""):
        return None
    if pretrained is True or str(pretrained).lower() in ("imagenet", "true", "default"):
        return imagenet_weights_file(arch)
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise UserError(f"model.pretrained = {str(pretrained)!r} for {arch!r}: no such weights file")
    return path


def imagenet_weights_file(arch: str) -> Path:
    """torchvision's ImageNet weights file of ``arch`` in the torch cache, downloaded when absent.

    The download goes through torch.hub (checked against the SHA-256 prefix in the file name and
    moved into place only when complete), so the cache never holds a partial file.
    """
    import re
    from urllib.parse import urlparse

    import torchvision.models

    enum = TORCHVISION_WEIGHTS.get(arch)
    if enum is None:
        raise UserError(
            f"model.pretrained = \"imagenet\" for {arch!r}: ImageNet weights by name exist for the torchvision "
            f"architectures ({', '.join(sorted(TORCHVISION_WEIGHTS))}); for {arch!r} set model.pretrained to a "
            "local weights file")
    url = getattr(torchvision.models, enum).IMAGENET1K_V1.url
    name = Path(urlparse(url).path).name
    cache = Path(torch.hub.get_dir()) / "checkpoints" / name
    if cache.is_file():
        return cache
    match = re.search(r"-([a-f0-9]+)\.", name)  # torchvision names files <arch>-<sha256 prefix>.pth
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cache), hash_prefix=match.group(1) if match else None,
                                       progress=True)
    except Exception as exc:  # no network (URLError, socket errors), a full disk, a hash mismatch
        raise UserError(
            f"model.pretrained = \"imagenet\" for {arch!r}: the ImageNet weights file {name} is not in the torch "
            f"cache ({cache}) and could not be downloaded from {url} ({type(exc).__name__}: {exc}). With "
            f"internet, run once to fill the cache; offline, download that URL elsewhere and copy the file to "
            f"{cache} (TORCH_HOME moves the cache), or set model.pretrained to the file's path") from None
    return cache


def load_state_dict_file(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """Read a weights file safely (tensors only; pickled code is refused)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError (and others) for unsafe content
        raise UserError(
            f"model.pretrained = {str(path)!r} for {arch!r}: not a plain weights file loadable with "
            f"weights_only=True ({type(exc).__name__}); files containing pickled code are refused"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.pretrained = {str(path)!r} for {arch!r}: expected a state_dict of tensors")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load ``state`` strictly, turning a mismatch into a message that names the file and model."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise UserError(
            f"model.pretrained = {str(path)!r}: its weights do not fit {arch!r} ({' '.join(first)})"
        ) from None
