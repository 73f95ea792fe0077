"""Components: the named, configurable things plugins register (architectures, injectors, ...).

A plugin registers a component by calling the ``register`` callback it receives from a
registration hook::

    @hookimpl
    def register_architectures(register):
        register("resnet18", build_resnet18, config=ResNet18Config)

The ``impl`` object is kind-specific (a factory function, a class, a stage object); core only
stores it. The package that owns a kind documents what its ``impl`` must look like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from dhs_core.errors import PluginError

#: The component kinds of DESIGN.md §6, each with the registration hook that provides it.
KINDS: dict[str, str] = {
    "data_source": "register_data_sources",
    "preprocessor": "register_preprocessors",
    "architecture": "register_architectures",
    "loss": "register_losses",
    "injector": "register_injectors",
    "evaluator": "register_evaluators",
    "executor": "register_executors",
    "stage": "register_stages",
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")


class ComponentConfig(BaseModel):
    """Base class of every component ``Config``: frozen, and unknown keys are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EmptyConfig(ComponentConfig):
    """A component that takes no options."""


@dataclass(frozen=True)
class Component:
    """One registered component and where it came from."""

    name: str
    kind: str
    impl: Any
    Config: type[BaseModel]
    distribution: str
    version: str
    summary: str = ""
    plugin: str = field(default="", compare=False)

    def make_config(self, **options: Any) -> BaseModel:
        """Validate ``options`` against this component's ``Config``."""
        return self.Config(**options)


class Registrar:
    """The ``register`` callback handed to one plugin's registration hook.

    It remembers which distribution is registering, so every component records its
    provider, and so a duplicate name can be reported with both distributions.
    """

    def __init__(
        self,
        kind: str,
        distribution: str,
        version: str,
        plugin: str,
        sink: Callable[[Component], None],
    ) -> None:
        self.kind = kind
        self.distribution = distribution
        self.version = version
        self.plugin = plugin
        self._sink = sink

    def __call__(
        self,
        name: str,
        impl: Any,
        *,
        config: type[BaseModel] | None = None,
        summary: str | None = None,
    ) -> Component:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"plugin {self.plugin!r} ({self.distribution}) registered a {self.kind} named "
                f"{name!r}; names are lower-case letters, digits, '_' or '-', starting with a letter"
            )
        if config is None:
            config = getattr(impl, "Config", None) or EmptyConfig
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(
                f"{self.kind} {name!r} from {self.distribution}: config must be a pydantic model class"
            )
        cfg = config.model_config
        if cfg.get("extra") != "forbid" or not cfg.get("frozen"):
            raise PluginError(
                f"{self.kind} {name!r} from {self.distribution}: its Config must be frozen with "
                "extra='forbid' (subclass dhs_core.ComponentConfig)"
            )
        if "name" in config.model_fields:
            raise PluginError(
                f"{self.kind} {name!r} from {self.distribution}: 'name' is reserved in a Config; "
                "it selects the component in a spec"
            )
        if summary is None:
            doc = (getattr(impl, "__doc__", None) or "").strip()
            summary = doc.splitlines()[0] if doc else ""
        comp = Component(
            name=name,
            kind=self.kind,
            impl=impl,
            Config=config,
            distribution=self.distribution,
            version=self.version,
            summary=summary,
            plugin=self.plugin,
        )
        self._sink(comp)
        return comp
