"""Checkpoints: a plain dict of tensors and builtins, written atomically, read only with
``torch.load(..., weights_only=True)`` (:func:`dhs_models.inference.read_checkpoint`, the one
reader) so a checkpoint can never execute code.

Keys: model, architecture (resolved [model] section incl. name), preprocess, epoch (0-based index
of the last completed epoch), optimizer, scheduler, scaler, best_metric, early_stopping, rng, spec.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhs_core.errors import UserError
from dhs_core.io import atomic_path


def rng_state() -> dict[str, Any]:
    """Every RNG a training step can touch, in weights_only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a reader or a resumed run never sees half a checkpoint."""
    # through a file object: given a path, torch names the records inside the zip after the
    # (random) temporary file name, so the same weights would never give the same bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


def check_architecture(ckpt: dict[str, Any], path: str | Path, architecture: dict[str, Any], *, what: str) -> None:
    """Refuse weights of a different network, naming both architectures."""
    have = dict(ckpt["architecture"] or {})
    want = dict(architecture)
    if have.get("name") != want.get("name"):
        raise UserError(
            f"{what} {str(path)!r} holds a {have.get('name')!r} model, but [model] asks for "
            f"{want.get('name')!r}; use a checkpoint of the same architecture or change model.name"
        )
    # pretrained only says where the initial weights came from; it does not change the network
    differing = sorted(k for k in set(have) | set(want) if k != "pretrained" and have.get(k) != want.get(k))
    if differing:
        diffs = ", ".join(f"{k}: checkpoint {have.get(k)!r} vs spec {want.get(k)!r}" for k in differing)
        raise UserError(f"{what} {str(path)!r}: {want.get('name')!r} options differ from [model] ({diffs})")
