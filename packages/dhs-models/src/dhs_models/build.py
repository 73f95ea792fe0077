"""``build_model(name, **config)``: an architecture from the registry, by name."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from torch import nn

from dhs_core import plugins
from dhs_core.errors import SpecError


def build_model(name: str, **config: Any) -> nn.Module:
    """Build registered architecture ``name`` with ``config`` options: (N, 3, H, W) -> (N, 1) logits.

    Works for every installed architecture plugin, not only dhs-models' own.
    """
    comp = plugins.get("architecture", name, where="model.name")
    try:
        cfg = comp.Config(**config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"model {name!r}: invalid options {config!r}: {problems}") from None
    return comp.impl(cfg)


def build_from_section(section: Any) -> nn.Module:
    """Build from a resolved ``[model]`` section (a validated config with ``.name``, or a dict)."""
    data = section.model_dump(mode="python") if hasattr(section, "model_dump") else dict(section)
    data = dict(data)
    name = data.pop("name")
    return build_model(name, **data)
