"""Array plumbing shared by the physics modules: numpy-in/numpy-out and first-axis batching.

Every public physics function accepts numpy arrays, torch tensors or Python scalars. Coordinates
``x, y`` have any shape whose first axis is the batch (or a flat list of points); a parameter is a
scalar or a 1-d array of length N that is broadcast over the trailing axes of the coordinates.
If any array input is numpy (and none is torch) the outputs are numpy, otherwise torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_DTYPE = torch.float32


def is_numpy_call(*values: Any) -> bool:
    """True when no input is a torch tensor: the caller gets numpy back."""
    return not any(isinstance(v, torch.Tensor) for v in values)


def pick_dtype(*values: Any, dtype: torch.dtype | None = None) -> torch.dtype:
    """The working dtype: explicit ``dtype``, else float64 if any input is float64, else float32."""
    if dtype is not None:
        return dtype
    for v in values:
        if isinstance(v, torch.Tensor) and v.dtype == torch.float64:
            return torch.float64
        if isinstance(v, np.ndarray) and v.dtype == np.float64:
            return torch.float64
    return DEFAULT_DTYPE


def pick_device(*values: Any) -> torch.device:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def as_tensor(value: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def batch_param(value: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a scalar or (N,) parameter so it broadcasts against an ``ndim``-d coordinate array."""
    if value.ndim == 0 or ndim <= 1:
        return value
    if value.ndim != 1:
        raise ValueError(f"lens/source parameters must be scalars or 1-d (N,), got shape {tuple(value.shape)}")
    return value.reshape((-1,) + (1,) * (ndim - 1))


def prepare(coords: tuple[Any, ...], params: dict[str, Any], dtype: torch.dtype | None = None):
    """Convert coordinates and parameters to tensors of one dtype/device, parameters batched."""
    every = (*coords, *params.values())
    dt = pick_dtype(*every, dtype=dtype)
    dev = pick_device(*every)
    tcoords = [as_tensor(c, dt, dev) for c in coords]
    ndim = max(c.ndim for c in tcoords) if tcoords else 0
    tparams = {k: batch_param(as_tensor(v, dt, dev), ndim) for k, v in params.items()}
    return tcoords, tparams, is_numpy_call(*every)


def finish(outputs: tuple[torch.Tensor, ...], to_numpy: bool):
    if to_numpy:
        return tuple(o.detach().cpu().numpy() for o in outputs)
    return outputs
