"""Fixtures other packages reuse in their tests: a tiny two-stage pipeline plugin and helpers.

``FixturePlugin`` registers a ``counter`` data stage and a ``square`` stage; they write small
JSON artifacts and count how often they ran, so tests can check ordering, hashing and resume
without heavy dependencies.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Annotated, Any, Iterator

from pydantic import Field

from dhs_core import io, plugins
from dhs_core.components import ComponentConfig
from dhs_core.hookspecs import hookimpl
from dhs_core.spec import Slot
from dhs_core.stages import Section, Stage, StageContext


class CountSource(ComponentConfig):
    # how many numbers the source stage writes
    n: int = Field(3, ge=1)


class OffsetSource(ComponentConfig):
    # first number written
    start: int = 10
    # how many numbers
    n: int = Field(2, ge=1)


class SquareOptions(ComponentConfig):
    # multiplier applied after squaring
    scale: float = 1.0
    # a nested component slot: which "source" shapes the output (exercises nested slots)
    weighting: Annotated[Any, Slot("loss")] = {"name": "fx_plain"}


class PlainWeight(ComponentConfig):
    """No weighting."""


class ScaledWeight(ComponentConfig):
    # factor applied to every value
    factor: float = 2.0


class NumbersStage(Stage):
    name = "numbers"
    sections = {"numbers": Section(Slot("data_source"), description="fixture numbers source")}
    trigger = "numbers"
    produces = ("numbers/values.json",)
    calls: list[str] = []
    fail_after: bool = False

    def run(self, ctx: StageContext) -> dict[str, float]:
        cfg = ctx.spec.numbers
        start = getattr(cfg, "start", 1)
        values = list(range(start, start + cfg.n))
        io.write_json(ctx.path("numbers/values.json"), values)
        NumbersStage.calls.append("numbers")
        return {"count": float(len(values))}


class SquareStage(Stage):
    name = "square"
    sections = {"square": Section(SquareOptions)}
    trigger = "square"
    needs = ("numbers/values.json",)
    produces = ("square/values.json",)
    crash: bool = False

    def run(self, ctx: StageContext) -> dict[str, float]:
        if os.environ.get("DHS_FIXTURE_KILL") == "square":
            os._exit(137)  # as if the process were killed: no cleanup, no exception handling
        if SquareStage.crash:
            raise RuntimeError("simulated crash in square")
        values = json.loads(ctx.path("numbers/values.json").read_text())
        w = ctx.spec.square.weighting
        factor = getattr(w, "factor", 1.0)
        out = [v * v * ctx.spec.square.scale * factor for v in values]
        io.write_json(ctx.path("square/values.json"), out)
        NumbersStage.calls.append("square")
        return {"total": float(sum(out))}


class FixturePlugin:
    @hookimpl
    def register_data_sources(self, register):
        register("fx_count", object(), config=CountSource, summary="count from 1")
        register("fx_offset", object(), config=OffsetSource, summary="count from start")

    @hookimpl
    def register_losses(self, register):
        register("fx_plain", object(), config=PlainWeight)
        register("fx_scaled", object(), config=ScaledWeight)

    @hookimpl
    def register_stages(self, register):
        register("numbers", NumbersStage())
        register("square", SquareStage())


@contextlib.contextmanager
def registered(plugin: Any, name: str, distribution: str | None = None, version: str = "0") -> Iterator[Any]:
    """Register ``plugin`` for the duration of a ``with`` block (always unregistered)."""
    plugins.register_plugin(plugin, name=name, distribution=distribution, version=version)
    try:
        yield plugin
    finally:
        plugins.unregister_plugin(name)


# ------------------------------------------------------------------------------------------------
# Contract checks every package reuses for its registered components
# ------------------------------------------------------------------------------------------------


def undocumented_fields(config: type) -> list[str]:
    """Fields of ``config`` (own or inherited) with no ``#`` comment (on the line above or at the end
    of the definition's line) and no ``description``. Every field carries a comment: it is what `dhs schema` and the docs show a user."""
    import inspect

    missing = []
    for klass in [k for k in config.__mro__ if "__annotations__" in vars(k)]:
        own = [f for f in vars(klass)["__annotations__"] if f in config.model_fields]
        if not own:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        for fname in own:
            if config.model_fields[fname].description:
                continue
            idx = next((i for i, ln in enumerate(lines) if ln.strip().startswith(f"{fname}:")), None)
            above = idx is not None and idx > 0 and lines[idx - 1].strip().startswith("#")
            inline = idx is not None and "  # " in lines[idx]
            if not (above or inline):
                missing.append(f"{klass.__name__}.{fname}")
    return sorted(set(missing))


def check_component(comp: Any) -> None:
    """The contract every registered component meets, whatever its kind."""
    from pydantic import ValidationError

    cfg = comp.Config
    assert cfg.model_config.get("frozen") and cfg.model_config.get("extra") == "forbid", comp
    assert comp.distribution and comp.version, f"{comp.kind} {comp.name} does not know its provider"
    assert not undocumented_fields(cfg), f"{comp.kind} {comp.name}: fields without a comment: {undocumented_fields(cfg)}"
    required = [f for f, info in cfg.model_fields.items() if info.is_required()]
    if not required:
        instance = cfg()
        try:
            cfg(__not_a_field__=1)
        except ValidationError:
            pass
        else:  # pragma: no cover - frozen/forbid checked above
            raise AssertionError(f"{comp.kind} {comp.name}: unknown options are accepted")
        try:
            setattr(instance, next(iter(cfg.model_fields), "x"), None)
        except (ValidationError, TypeError, AttributeError):
            pass
        else:
            raise AssertionError(f"{comp.kind} {comp.name}: Config instances are not frozen")


def components_of(distribution: str) -> list[Any]:
    """Every component ``distribution`` registers, for registry-parametrized contract tests::

        @pytest.mark.parametrize("comp", components_of("dhs-data"), ids=str)
        def test_core_contract(comp):
            check_component(comp)
    """
    from dhs_core.components import KINDS

    return [c for kind in KINDS for c in plugins.components(kind).values() if c.distribution == distribution]


def core_contract_test(distribution: str) -> Any:
    """A registry-parametrized pytest test of :func:`check_component` over every component
    ``distribution`` registers (and a check that it registers some). In a package's tests::

        test_core_contract = core_contract_test("dhs-data")
    """
    import pytest

    comps = components_of(distribution)

    @pytest.mark.parametrize("comp", comps or [None], ids=[f"{c.kind}:{c.name}" for c in comps] or ["none"])
    def test_core_contract(comp: Any) -> None:
        assert comp is not None, f"{distribution} registers no components"
        check_component(comp)

    return test_core_contract


def _core_plugins_only_fixture() -> Any:
    import pytest

    others = ",".join(d for d in plugins.BUILTIN_DISTRIBUTIONS if d not in ("dhs-core", "dhs-cli"))

    @pytest.fixture(autouse=True)
    def core_plugins_only(monkeypatch: Any) -> Any:
        """Block the other dhs packages' plugins, so fixture pipelines do not pick up their stages
        (e.g. dhs-eval's always-on report stage) when everything is installed together.
        Use from a conftest: ``from dhs_core.testing import core_plugins_only  # noqa: F401``."""
        monkeypatch.setenv("DHS_DISABLE_PLUGINS", others)
        plugins.reset()
        yield
        plugins.reset()

    return core_plugins_only


def __getattr__(name: str) -> Any:
    # built on first use so that importing dhs_core.testing does not require pytest
    if name == "core_plugins_only":
        return _core_plugins_only_fixture()
    raise AttributeError(name)
