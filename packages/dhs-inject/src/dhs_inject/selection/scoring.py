"""Scoring injected cutouts with the trained finder, exactly as the train stage scored real ones.

The network is rebuilt through the architecture registry from the checkpoint (contract 8; no
import of dhs_models), loaded with ``weights_only=True``, and fed the cutouts after the same
preprocessor as training. Scores are ``sigmoid(float32 logits)`` in float64, as in
``train/scores.parquet``, so a threshold derived from those scores means the same here.
Models are cached per process: executor workers load a checkpoint once, not once per cell.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from dhs_core import plugins
from dhs_core.errors import UserError

_CACHE: dict[tuple[str, int, int], tuple[torch.nn.Module, tuple[str, ...]]] = {}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; anything but tensors and builtins (pickled code) is refused."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"checkpoint {str(path)!r} contains pickled objects, which are refused (weights_only=True): "
                        f"{str(exc).splitlines()[0]}") from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"checkpoint {str(path)!r} is not a readable torch checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt.get("architecture"), dict):
        raise UserError(f"checkpoint {str(path)!r} is not a dhs checkpoint (needs 'model' and 'architecture')")
    return ckpt


def build_network(architecture: Mapping[str, Any]) -> torch.nn.Module:
    """The registered architecture named in a checkpoint's resolved ``[model]`` section."""
    options = dict(architecture)
    name = options.pop("name", None)
    comp = plugins.get("architecture", str(name), where="checkpoint architecture.name")
    return comp.impl(comp.Config(**options))


def load_model(checkpoint: str | Path) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """(model in eval mode, metadata columns it fuses), cached per file version in this process."""
    path = Path(checkpoint)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        ckpt = read_checkpoint(path)
        model = build_network(ckpt["architecture"])
        model.load_state_dict(ckpt["model"])
        model.eval()
        _CACHE.clear()
        _CACHE[key] = (model, tuple(getattr(model, "metadata_columns", ()) or ()))
    return _CACHE[key]


def build_preprocess(preprocess: Mapping[str, Any] | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The training preprocessor from its resolved ``[preprocess]`` dict (None = raw cutouts)."""
    if preprocess is None:
        return None
    options = dict(preprocess)
    name = options.pop("name")
    comp = plugins.get("preprocessor", str(name), where="preprocess.name")
    return comp.impl(comp.Config(**options))


@torch.no_grad()
def score_images(model: torch.nn.Module, images: np.ndarray, *, preprocess=None, meta: np.ndarray | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Scores (N,) float64 in [0, 1] of (N, 3, H, W) nanomaggy cutouts; NaN where the model gives NaN."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size], dtype=np.float32)
        if preprocess is not None:
            chunk = np.asarray(preprocess(chunk), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(chunk))
        if meta is not None:
            logits = model(x, torch.from_numpy(np.asarray(meta[start:start + batch_size], np.float32)))
        else:
            logits = model(x)
        out.append(torch.sigmoid(logits.reshape(-1).float().double()).numpy())
    return np.concatenate(out) if out else np.zeros(0)
