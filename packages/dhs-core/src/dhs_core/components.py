"""Components: the named, configurable things plugins register (architectures, injectors, ...).

A plugin registers a component by calling the ``register`` callback it receives from a
registration hook::

    @hookimpl
    def register_architectures(register):
        register("resnet18", "my_pkg.resnet18:build_resnet18", config=ResNet18Config)

The ``impl`` is kind-specific (a factory function, a class, a stage object); core only stores it.
It may be given as the object itself or as a ``"module:attr"`` string that is imported the first
time :attr:`Component.impl` is read. With a string, registering costs only the import of the
``Config`` class, which lives in a module that imports no torch, matplotlib, scikit-learn or
scipy: listing plugins and validating specs never pays for the heavy libraries a component
uses (docs/architecture.md, "Light registration"). The package that owns a kind documents what
its ``impl`` must look like.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from dhs_core.errors import PluginError

#: The component kinds (the public names of ``dhs_core.plugins.components``), each with the registration hook that provides it.
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
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_import_lock = threading.RLock()


class ComponentConfig(BaseModel):
    """Base class of every component ``Config``: frozen, and unknown keys are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class EmptyConfig(ComponentConfig):
    """A component that takes no options."""


@dataclass(frozen=True)
class Component:
    """One registered component and where it came from.

    ``impl`` is the implementation; when it was registered as a ``"module:attr"`` string it is
    imported on first access (and kept), and an import failure is a :class:`PluginError` naming
    the distribution that registered it.
    """

    name: str
    kind: str
    impl_ref: Any
    Config: type[BaseModel]
    distribution: str
    version: str
    summary: str = ""
    plugin: str = field(default="", compare=False)
    _loaded: list = field(default_factory=list, compare=False, repr=False)

    @property
    def is_loaded(self) -> bool:
        """False while a ``"module:attr"`` implementation has not been imported yet."""
        return not isinstance(self.impl_ref, str) or bool(self._loaded)

    @property
    def impl(self) -> Any:
        if not isinstance(self.impl_ref, str):
            return self.impl_ref
        if not self._loaded:
            with _import_lock:
                if not self._loaded:
                    self._loaded.append(_import_ref(self.impl_ref, self))
        return self._loaded[0]

    def make_config(self, **options: Any) -> BaseModel:
        """Validate ``options`` against this component's ``Config``."""
        return self.Config(**options)


def _import_ref(ref: str, comp: Component) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must say who it is
        raise PluginError(
            f"{comp.kind} {comp.name!r} from distribution {comp.distribution} {comp.version}: "
            f"cannot import its implementation {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return obj


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
        if isinstance(impl, str):
            if not _REF_RE.match(impl):
                raise PluginError(
                    f"plugin {self.plugin!r} ({self.distribution}) registered {self.kind} {name!r} as "
                    f"{impl!r}; a string implementation is 'package.module:attribute'"
                )
            if config is None:
                raise PluginError(
                    f"{self.kind} {name!r} from {self.distribution}: an implementation given as a "
                    "'module:attr' string needs config=<its Config class> (pass EmptyConfig for none)"
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
            # a string implementation is not imported to read its docstring: the Config's serves
            source = config if isinstance(impl, str) and config is not EmptyConfig else impl
            doc = "" if isinstance(source, str) else (getattr(source, "__doc__", None) or "").strip()
            summary = doc.splitlines()[0] if doc else ""
        comp = Component(
            name=name,
            kind=self.kind,
            impl_ref=impl,
            Config=config,
            distribution=self.distribution,
            version=self.version,
            summary=summary,
            plugin=self.plugin,
        )
        self._sink(comp)
        return comp
