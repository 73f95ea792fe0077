"""``chain``: preprocessors applied one after the other (``[[preprocess]]`` in a spec).

A spec that writes the preprocess section as an array of tables::

    [[preprocess]]
    name = "center_crop"
    size = 64

    [[preprocess]]
    name = "raw_robust"
    annulus = [20, 32]

is read as ``{ name = "chain", steps = [...] }`` (the data stage's section declares
``list_as = "chain"``), so training, evaluation, scoring and injection, which all build the one
``[preprocess]`` section, apply the same steps in the same order. Each step is validated as its
own component (errors name ``steps[i]``) and stored resolved, defaults included, so a checkpoint
records exactly what ran and two chains compare equal when they do the same thing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from pydantic import Field, field_validator

from dhs_core import ComponentConfig


class ChainConfig(ComponentConfig):
    """Options of ``chain``."""

    # the preprocessors, in the order they are applied, each a table with its name and options
    steps: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "raw_robust"}], min_length=1)

    @field_validator("steps", mode="before")
    @classmethod
    def _resolve_steps(cls, steps: Any) -> Any:
        from dhs_core import plugins

        if not isinstance(steps, (list, tuple)):
            return steps
        out = []
        for i, step in enumerate(steps):
            if hasattr(step, "model_dump"):  # a validated component config
                step = {"name": getattr(step, "name", None), **step.model_dump(mode="json")}
            if isinstance(step, dict) and step.get("name") == "chain":
                raise ValueError(f"steps[{i}]: a chain inside a chain; list its steps in the outer chain instead")
            try:
                comp, config = plugins.resolve("preprocessor", step, where=f"steps[{i}]")
            except Exception as exc:  # a UserError naming the step and the valid choices
                raise ValueError(str(exc)) from None
            out.append({"name": comp.name, **config.model_dump(mode="json")})
        return out


def build_chain(config: ChainConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The steps built once, applied in order."""
    from dhs_core import plugins

    funcs = [plugins.build("preprocessor", step, where=f"preprocess.steps[{i}]") for i, step in enumerate(config.steps)]

    def apply(cutout: np.ndarray) -> np.ndarray:
        for fn in funcs:
            cutout = fn(cutout)
        return cutout

    return apply
