"""Inference: checkpoint -> network -> training preprocessor -> scores, on any device.

The one place a checkpoint is read (:func:`read_checkpoint`) and a trained lens finder is
rebuilt (:func:`load_finder`). Every reader goes through it: the train stage scoring its val and
test splits, the selection-function cells scoring injections, the injection-based diagnostics,
fine-tuning and resume. So a score means the same thing everywhere: a checkpoint's network, fed
cutouts after the checkpoint's own preprocessor, gives ``sigmoid(float32 logit)`` evaluated in
float64. Float64 matters for thresholds: a float32 sigmoid saturates to exactly 1.0 for confident
lenses, which would tie them at the operating point.

Checkpoints are plain dicts of tensors and builtins, read only with
``torch.load(..., weights_only=True)``, so loading a checkpoint can never execute code. The
network is rebuilt through the architecture registry from the checkpoint's resolved ``[model]``
section, so every installed architecture plugin works, not only dhs-models' own.

Devices: ``"auto"`` is CUDA when present. The CUDA-only branches are small and named
(:func:`_cuda_layout`: channels_last; :func:`_autocast`: bf16 / fp16) so a GPU machine can check
them; on the CPU inference is float32 whatever precision is asked, so CPU scores stay
bit-identical to what the train stage writes.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dhs_core import plugins
from dhs_core.errors import UserError

#: ``load_finder(..., preprocess=FROM_CHECKPOINT)``: use the preprocessor the network was trained with
FROM_CHECKPOINT: Literal["checkpoint"] = "checkpoint"

Preprocess = Callable[[np.ndarray], np.ndarray]


def read_checkpoint(path: str | Path, *, what: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint dict at ``path``; pickled objects and unreadable files are a :class:`UserError`.

    ``what`` names the checkpoint in messages (``"train.init_weights"``, ``"resume checkpoint"``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {str(path)!r}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(str(exc))
        if "Unsupported global" in str(exc):
            raise UserError(
                f"{what} {str(path)!r} contains pickled code or objects, which are refused (checkpoints load "
                f"only with weights_only=True): {detail}"
            ) from None
        raise UserError(f"{what} {str(path)!r} is not a readable torch checkpoint ({detail})") from None
    except Exception as exc:  # truncated, not a zip/pickle, wrong torch format, ...
        raise UserError(f"{what} {str(path)!r} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt.get("architecture"), dict):
        raise UserError(
            f"{what} {str(path)!r} is not a dhs checkpoint (expected a dict with 'model' and 'architecture')"
        )
    return ckpt


def _unpickling_detail(message: str) -> str:
    # torch wraps the unpickler's reason ("Unsupported global: GLOBAL x.Y ...", "Unsupported
    # operand 110" for bytes that are no pickle at all) in paragraphs of advice
    match = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    reason = match.group(1) if match else message.strip().splitlines()[0]
    return reason.split(". Please")[0].strip()


def build_network(architecture: Any, *, where: str = "model", source: str = "") -> nn.Module:
    """The registered architecture of a resolved ``[model]`` section (dict with ``name``, or its model)."""
    return plugins.build("architecture", architecture, where=where, source=source)


def build_preprocess(section: Any, *, where: str = "preprocess", source: str = "") -> Preprocess | None:
    """The preprocessor of a resolved ``[preprocess]`` section; None (raw cutouts) for no section."""
    if section is None:
        return None
    return plugins.build("preprocessor", section, where=where, source=source)


def same_preprocess(a: Any, b: Any) -> bool:
    """Whether two ``[preprocess]`` sections select the same preprocessor with the same options.

    Compared after validation, so a section written with defaults left out (a TOML file drops
    unset options) equals the resolved one the checkpoint records.
    """
    def canonical(section: Any) -> tuple[str, dict[str, Any]] | None:
        if section is None:
            return None
        comp, config = plugins.resolve("preprocessor", section, where="preprocess")
        return comp.name, config.model_dump(mode="json")

    return canonical(a) == canonical(b)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """A torch device; ``"auto"`` is the first CUDA device when there is one, else the CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: ``precision`` of inference: float32, or autocast to bfloat16 / float16 (CUDA only)
PRECISIONS = ("fp32", "bf16", "fp16")


def require_device(device: str | torch.device = "auto", *, what: str = "--device") -> torch.device:
    """:func:`resolve_device`, refusing a CUDA device on a machine without CUDA (a :class:`UserError`
    naming ``what``: the option or spec field that asked for it)."""
    dev = resolve_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{what} = {str(device)!r} asks for CUDA, but torch sees no CUDA device here "
                        f"(torch {torch.__version__}); set {what} to cpu or auto")
    return dev


def _autocast(device: torch.device, precision: str) -> Any:
    """The autocast context of ``precision`` on ``device``.

    CUDA-only branch: on the CPU inference always runs in float32, so CPU scores stay
    bit-identical to what the train stage wrote whatever precision was asked for.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _cuda_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """CUDA-only branch: channels_last weights, the layout cuDNN's convolutions are fastest in."""
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


@dataclass
class Finder:
    """A trained lens finder: network in eval mode on ``device``, and its training preprocessor."""

    model: nn.Module
    preprocess: Preprocess | None
    metadata_columns: tuple[str, ...]  # manifest columns the network fuses, in its order
    architecture: dict[str, Any]  # the checkpoint's resolved [model] section
    preprocess_section: dict[str, Any] | None  # the resolved [preprocess] section used
    device: torch.device
    info: dict[str, Any]  # the checkpoint's other entries (epoch, best_metric, metrics, spec, ...)

    def score(self, images: np.ndarray, *, meta: np.ndarray | None = None, batch_size: int = 64,
              precision: str = "fp32") -> np.ndarray:
        """(N,) float64 scores of (N, 3, H, W) raw nanomaggy cutouts (see :func:`score_images`)."""
        return score_images(self.model, images, preprocess=self.preprocess, meta=meta, batch_size=batch_size,
                            device=self.device, precision=precision)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, H', W') float32 network inputs: raw cutouts after the training preprocessor."""
        images = np.asarray(images, dtype=np.float32)
        if self.preprocess is None or len(images) == 0:
            return images
        return np.asarray(self.preprocess(images), dtype=np.float32)


_CACHE: dict[tuple[Any, ...], Finder] = {}
#: checkpoint entries that are training state, not kept in a finder's ``info``
_STATE_KEYS = ("model", "architecture", "preprocess", "optimizer", "scheduler", "scaler", "rng")


def load_finder(checkpoint: str | Path, *, device: str | torch.device = "cpu",
                preprocess: Mapping[str, Any] | None | Literal["checkpoint"] = FROM_CHECKPOINT,
                what: str = "checkpoint") -> Finder:
    """The trained finder of ``checkpoint`` on ``device``, cached per file version in this process.

    ``preprocess`` is the caller's ``[preprocess]`` section when it has one: a section different
    from the one the checkpoint was trained with is refused (injections and held-out cutouts must
    reach the network exactly as the training cutouts did). The cache holds one finder, so
    executor workers load a checkpoint once rather than once per task.
    """
    path = Path(checkpoint)
    dev = resolve_device(device)
    try:
        st = path.stat()
    except OSError:
        read_checkpoint(path, what=what)  # raises the "no such file" error
        raise
    # checkpoints are replaced by an atomic rename, so a rewritten file has a new inode
    key = (str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size, str(dev))
    finder = _CACHE.get(key)
    if finder is None:
        ckpt = read_checkpoint(path, what=what)
        model = build_network(dict(ckpt["architecture"]), where=f"{what} {str(path)!r}: architecture")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
            first = str(exc).strip().splitlines()
            raise UserError(f"{what} {str(path)!r}: its weights do not load into architecture "
                            f"{ckpt['architecture'].get('name')!r} as installed here "
                            f"({first[1].strip() if len(first) > 1 else first[0]})") from None
        _cuda_layout(model.to(dev), dev)
        model.eval()
        section = ckpt.get("preprocess")  # the trainer records it; None = raw cutouts
        finder = Finder(model=model, preprocess=build_preprocess(section, where=f"{what} {str(path)!r}: preprocess"),
                        metadata_columns=tuple(getattr(model, "metadata_columns", ()) or ()),
                        architecture=dict(ckpt["architecture"]), preprocess_section=section, device=dev,
                        info={k: v for k, v in ckpt.items() if k not in _STATE_KEYS})
        _CACHE.clear()
        _CACHE[key] = finder
    if preprocess != FROM_CHECKPOINT and not same_preprocess(finder.preprocess_section, preprocess):
        raise UserError(f"{what} {str(path)!r} was trained with preprocess {finder.preprocess_section!r} but "
                        f"[preprocess] here is {preprocess!r}; cutouts must be preprocessed as in training")
    return finder


@torch.no_grad()
def logits(model: nn.Module, image: torch.Tensor, meta: torch.Tensor | None, device: torch.device,
           precision: str = "fp32") -> torch.Tensor:
    """(N,) float32 logits on the CPU of a batch; ``meta`` only for a network that fuses metadata.

    ``precision`` autocasts on CUDA only (:func:`_autocast`); the logits come back as float32.
    """
    x = image.to(device, non_blocking=True)
    if device.type == "cuda":  # CUDA-only branch: inputs in the layout of the weights (_cuda_layout)
        x = x.contiguous(memory_format=torch.channels_last)
    with _autocast(device, precision):
        out = model(x) if meta is None else model(x, meta.to(device, non_blocking=True))
    return out.reshape(-1).float().cpu()


def probabilities(batch_logits: torch.Tensor) -> np.ndarray:
    """Scores in [0, 1]: sigmoid of float32 logits, evaluated in float64 (NaN stays NaN)."""
    return torch.sigmoid(batch_logits.double()).numpy()


@torch.no_grad()
def score_images(model: nn.Module, images: np.ndarray, *, preprocess: Preprocess | None = None,
                 meta: np.ndarray | None = None, batch_size: int = 64,
                 device: str | torch.device = "cpu", precision: str = "fp32") -> np.ndarray:
    """(N,) float64 scores of (N, 3, H, W) nanomaggy cutouts, ``batch_size`` at a time.

    ``preprocess`` is applied to each batch of raw cutouts; ``meta`` is the (N, n_columns) metadata
    of a network that fuses it. NaN where the network gives NaN: a caller counts that as a failure,
    never as a non-detection.
    """
    dev = resolve_device(device)
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size], dtype=np.float32)
        if preprocess is not None:
            chunk = np.asarray(preprocess(chunk), dtype=np.float32)
        m = None if meta is None else torch.from_numpy(np.asarray(meta[start:start + batch_size], np.float32))
        out.append(probabilities(logits(model, torch.from_numpy(np.ascontiguousarray(chunk)), m, dev, precision)))
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def score_dataset(model: nn.Module, dataset: Any, *, batch_size: int, device: str | torch.device = "cpu",
                  num_workers: int = 0) -> tuple[list[str], np.ndarray]:
    """(galaxy ids, (N,) float64 scores) of a cutout dataset in order.

    ``dataset`` yields dhs-data sample dicts (``image`` already preprocessed by the dataset,
    ``meta``, ``galaxy_id``), e.g. ``dhs_data.datasets.CutoutDataset(..., preprocess=...)``.
    """
    from torch.utils.data import DataLoader

    # the batched fast path of dhs-data stores (one read per shard per batch)
    from dhs_data.datasets import collate

    dev = resolve_device(device)
    model.eval()
    fuses = bool(getattr(model, "metadata_columns", ()))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    ids: list[str] = []
    parts: list[torch.Tensor] = []
    for batch in loader:
        parts.append(logits(model, batch["image"], batch["meta"] if fuses else None, dev))
        ids.extend(batch["galaxy_id"])
    return ids, (probabilities(torch.cat(parts)) if parts else np.zeros(0))
