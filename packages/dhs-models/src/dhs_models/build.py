"""``build_model(name, **config)``: an architecture from the registry, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dhs_core import plugins

if TYPE_CHECKING:
    from torch import nn


def build_model(name: str, **config: Any) -> nn.Module:
    """Build registered architecture ``name`` with ``config`` options: (N, 3, H, W) -> (N, 1) logits.

    Works for every installed architecture plugin, not only dhs-models' own. An unknown name or
    invalid options are a :class:`~dhs_core.errors.SpecError` naming the valid choices.
    """
    return plugins.build("architecture", {"name": name, **config}, where="model")
