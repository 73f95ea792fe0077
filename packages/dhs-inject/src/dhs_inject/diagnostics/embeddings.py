"""Embeddings of a lens finder at its penultimate layer and at the end of each backbone stage.

The layers are found from the network itself, so every registered architecture works:

* **penultimate**: the input of the head, i.e. the feature vector the final linear layer sees
  (for :class:`~dhs_models.architectures.base.LensClassifier` this is the backbone's pooled
  features, concatenated with the metadata branch when there is one). For a network without a
  ``head`` attribute it is the input of its last ``nn.Linear``.
* **stage ends**: the backbone's blocks are the modules held in its plain ``nn.Sequential`` /
  ``nn.ModuleList`` containers that contain a convolution or linear layer (a residual unit, an
  MBConv block, a ConvNeXt block, ...; a lone BatchNorm or activation is not a block). A stage
  is a run of consecutive blocks with the same output resolution; its last block's output is the
  stage's representation (the conventional "end of layerN" probe points of ResNet-style networks).
  Feature maps (N, C, H, W) are global-average-pooled to (N, C), as the network itself pools them.

Activations are captured with forward hooks (removed afterwards) in eval mode and without
gradients, so BatchNorm uses its running statistics exactly as in scoring.

:func:`project_2d` maps embeddings to two dimensions for a picture: UMAP (umap-learn, an optional
dependency) where it imports, PCA (scikit-learn) otherwise, both on standardized features so that
a few high-variance channels do not dominate the map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

PENULTIMATE = "penultimate"


def penultimate_module(model: nn.Module) -> nn.Module:
    """The module whose input is the penultimate-layer representation."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has neither a 'head' nor an nn.Linear layer; "
                         "its penultimate layer cannot be located")
    return linears[-1]


def _has_weights_layer(module: nn.Module) -> bool:
    # a block transforms features (convolution / linear); a lone BatchNorm or activation does not
    return any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) for m in module.modules())


def _block_candidates(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if type(child) in (nn.Sequential, nn.ModuleList):  # a plain container: descend
                walk(full, child)
            elif type(module) in (nn.Sequential, nn.ModuleList) and _has_weights_layer(child):
                out.append((full, child))  # a block held in a container
            elif type(module) not in (nn.Sequential, nn.ModuleList):
                walk(full, child)

    walk("", backbone)
    return out


def _pool(x: Any) -> torch.Tensor | None:
    if isinstance(x, (tuple, list)):
        x = x[0] if x else None
    if not isinstance(x, torch.Tensor):
        return None
    if x.ndim == 4:
        return x.float().mean(dim=(2, 3))
    if x.ndim == 3:  # (N, tokens, C) of transformer-style blocks
        return x.float().mean(dim=1)
    return x.float().reshape(len(x), -1)


@torch.no_grad()
def stage_end_layers(model: nn.Module, example: torch.Tensor, meta: torch.Tensor | None = None) -> list[str]:
    """Names (``backbone.<path>``) of the last block of each constant-resolution run of backbone blocks."""
    backbone = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    candidates = _block_candidates(backbone)
    shapes: dict[str, tuple] = {}
    order: list[str] = []
    handles = []
    for name, module in candidates:
        def hook(_m, _inp, out, name=name):
            if name not in shapes:
                o = out[0] if isinstance(out, (tuple, list)) else out
                shapes[name] = tuple(o.shape[2:]) if isinstance(o, torch.Tensor) and o.ndim == 4 else ("flat",)
                order.append(name)
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        _forward(model, example[:1], None if meta is None else meta[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    ends = [name for i, name in enumerate(order) if i + 1 == len(order) or shapes[order[i + 1]] != shapes[name]]
    return [prefix + name for name in ends if shapes[name] != ("flat",)]


def _forward(model: nn.Module, x: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
    return model(x) if meta is None else model(x, meta)


@torch.no_grad()
def extract_embeddings(model: nn.Module, images: np.ndarray, *, layers: list[str] | None = None,
                       meta: np.ndarray | None = None, batch_size: int = 64) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({layer: (N, C) float64 embedding}, (N,) float64 logits) of preprocessed images (N, 3, H, W).

    ``layers`` are module names (``model.named_modules()``); None = every stage end. The
    penultimate layer is always included under the key ``"penultimate"``.
    """
    images = np.asarray(images, dtype=np.float32)
    modules = dict(model.named_modules())
    if layers is None:
        layers = stage_end_layers(model, torch.from_numpy(images[:1]),
                                  None if meta is None else torch.from_numpy(np.asarray(meta[:1], np.float32)))
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise ValueError(f"layers {unknown} are not modules of {type(model).__name__}; "
                         f"valid names include {', '.join(list(modules)[1:8])}, ...")
    captured: dict[str, list[np.ndarray]] = {name: [] for name in (*layers, PENULTIMATE)}
    handles = [penultimate_module(model).register_forward_pre_hook(
        lambda _m, inp: captured[PENULTIMATE].append(_pool(inp).double().numpy()))]
    for name in layers:
        handles.append(modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured[name].append(_pool(out).double().numpy())))
    was_training = model.training
    model.eval()
    logits: list[np.ndarray] = []
    try:
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            m = None if meta is None else torch.from_numpy(np.asarray(meta[start:start + batch_size], np.float32))
            logits.append(_forward(model, x, m).reshape(-1).double().numpy())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    empty = {name: np.zeros((0, 0)) for name in captured}
    out = {name: np.concatenate(parts) if parts else empty[name] for name, parts in captured.items()}
    return out, (np.concatenate(logits) if logits else np.zeros(0))


#: 2-D projections :func:`project_2d` knows
PROJECTIONS = ("auto", "umap", "pca")


def umap_available() -> bool:
    """Whether ``import umap`` (umap-learn) works here."""
    try:
        import umap  # noqa: F401  (optional: heavy, pulls in numba)
    except Exception:  # not installed, or a broken numba/llvmlite underneath: fall back alike
        return False
    return True


def standardize(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit (population) variance per dimension; constant dimensions (dead ReLU
    channels) become zero instead of being divided by zero."""
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def project_2d(features: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """((N, 2) coordinates, {"method": "umap" | "pca", ...}) of (N, dim) standardized features.

    ``method`` "auto" is UMAP when umap-learn imports, PCA otherwise. PCA uses the exact SVD (no
    randomized solver), so its coordinates are reproducible up to the sign of each axis and it
    reports the explained-variance fraction of each axis; with fewer than two usable dimensions
    the missing axis is zero.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; valid: {', '.join(PROJECTIONS)}")
    x = standardize(features)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"a 2-D map needs at least 3 embeddings of shape (N, dim); got shape {x.shape}")
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        # UMAP's neighbourhood must be smaller than the sample; 15 is its default
        n_neighbors = min(15, len(x) - 1)
        coords = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed).fit_transform(x)
        return np.asarray(coords, dtype=np.float64), {"method": "umap", "n_neighbors": n_neighbors}
    from sklearn.decomposition import PCA

    k = min(2, *x.shape)
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    coords = np.zeros((len(x), 2))
    coords[:, :k] = pca.transform(x)
    ratio = [float(r) for r in pca.explained_variance_ratio_] + [0.0] * (2 - k)
    return coords, {"method": "pca", "explained_variance_ratio": ratio}
