"""The plugin manager: the one place that loads plugins and calls hooks.

Plugins are found through the ``dhs`` entry-point group; the built-in packages use the same
route a third party does. Loading is lazy and idempotent.

Environment:

* ``DHS_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point or distribution name.
* ``DHS_LOAD_PLUGINS=builtin`` loads only the dhs-* distributions of this monorepo (tests set
  it so an installed third-party plugin never changes their outcome); a comma-separated list
  of names loads those plugins and the built-ins.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
from typing import Any, Iterable, Mapping

import pluggy
from pydantic import BaseModel

from dhs_core import hookspecs
from dhs_core.components import KINDS, Component, Registrar
from dhs_core.errors import PluginError, SpecError

#: Distributions of the monorepo; ``DHS_LOAD_PLUGINS=builtin`` loads only these.
BUILTIN_DISTRIBUTIONS = ("dhs-core", "dhs-data", "dhs-inject", "dhs-models", "dhs-eval", "dhs-cli")
GROUP = "dhs"

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_components: dict[str, dict[str, Component]] | None = None
# plugin object -> (distribution, version) that provides it: entry-point plugins and plugins
# registered by hand (tests, notebooks) alike, so every component records its provider
_providers: dict[int, tuple[str, str]] = {}


def with_article(kind: str) -> str:
    """The kind with its indefinite article ("a loss", "an executor"), for messages."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _split_env(name: str) -> list[str]:
    return [p.strip() for p in os.environ.get(name, "").split(",") if p.strip()]


def _entry_points() -> list[md.EntryPoint]:
    return list(md.entry_points(group=GROUP))


def _selected_entry_points() -> list[tuple[md.EntryPoint, str, bool]]:
    """``(entry point, distribution, blocked)`` for each entry point the environment selects."""
    disabled = set(_split_env("DHS_DISABLE_PLUGINS"))
    allow = _split_env("DHS_LOAD_PLUGINS")
    out = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else ep.name
        if ep.name in disabled or dist in disabled:
            out.append((ep, dist, True))
        elif not allow or dist in BUILTIN_DISTRIBUTIONS or ep.name in allow or dist in allow:
            out.append((ep, dist, False))
    return out


def distribution_versions() -> list[tuple[str, str]]:
    """Sorted ``(distribution, version)`` of the plugins in use, from package metadata alone
    (plus plugins registered by hand, when the plugin manager is already loaded)."""
    found = {(dist, ep.dist.version if ep.dist is not None else "0")
             for ep, dist, blocked in _selected_entry_points() if not blocked}
    if _pm is not None:
        found |= {(d, v) for _, d, v in plugin_distributions()}
    return sorted(found)


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading entry points on first use."""
    global _pm
    with _lock:
        if _pm is not None:
            return _pm
        pm = pluggy.PluginManager(GROUP)
        pm.add_hookspecs(hookspecs)
        for ep, dist, blocked in _selected_entry_points():
            if blocked:
                pm.set_blocked(ep.name)
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                raise PluginError(
                    f"could not load plugin {ep.name!r} from distribution {dist!r}: {exc}"
                ) from exc
            pm.register(plugin, name=ep.name)
            version = ep.dist.version if ep.dist is not None else "0"
            _providers[id(plugin)] = (dist, version)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements a hook that does not exist: {exc}") from exc
        _pm = pm
        return pm


def register_plugin(
    plugin: Any, *, name: str, distribution: str | None = None, version: str = "0"
) -> None:
    """Register a plugin object by hand (tests, notebooks). Undo with :func:`unregister_plugin`."""
    global _components
    pm = get_plugin_manager()
    with _lock:
        pm.register(plugin, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(plugin)
            raise PluginError(f"plugin {name!r} implements a hook that does not exist: {exc}") from exc
        _providers[id(plugin)] = (distribution or name, version)
        _components = None


def unregister_plugin(name: str) -> None:
    global _components
    pm = get_plugin_manager()
    with _lock:
        plugin = pm.unregister(name=name)
        if plugin is not None:
            _providers.pop(id(plugin), None)
        _components = None


def reset() -> None:
    """Forget every loaded plugin and component (tests; a changed environment)."""
    global _pm, _components
    with _lock:
        _pm = None
        _components = None
        _providers.clear()


def _provider(pm: pluggy.PluginManager, plugin: Any) -> tuple[str, str, str]:
    pname = pm.get_name(plugin) or repr(plugin)
    dist, version = _providers.get(id(plugin), (pname, "0"))
    return pname, dist, version


def _load_components() -> dict[str, dict[str, Component]]:
    pm = get_plugin_manager()
    found: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
    for kind, hook_name in KINDS.items():
        caller = getattr(pm.hook, hook_name)
        # Call implementations one by one (pluggy order) so each registration is attributed
        # to the distribution that made it.
        for impl in reversed(caller.get_hookimpls()):
            pname, dist, version = _provider(pm, impl.plugin)

            def sink(comp: Component, _kind: str = kind) -> None:
                existing = found[_kind].get(comp.name)
                if existing is not None:
                    raise PluginError(
                        f"two plugins register a {_kind} named {comp.name!r}: "
                        f"{existing.distribution} {existing.version} (plugin {existing.plugin!r}) and "
                        f"{comp.distribution} {comp.version} (plugin {comp.plugin!r}); "
                        "uninstall one, or block it with DHS_DISABLE_PLUGINS"
                    )
                found[_kind][comp.name] = comp

            registrar = Registrar(kind, dist, version, pname, sink)
            kwargs = {"register": registrar}
            impl.function(**{a: kwargs[a] for a in impl.argnames})
    return found


def _all() -> dict[str, dict[str, Component]]:
    global _components
    with _lock:
        if _components is None:
            _components = _load_components()
        return _components


def components(kind: str) -> dict[str, Component]:
    """Registered components of ``kind`` by name."""
    if kind not in KINDS:
        raise KeyError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
    return dict(_all()[kind])


def all_components() -> list[Component]:
    return [c for kind in KINDS for c in _all()[kind].values()]


def get(kind: str, name: str, *, where: str = "") -> Component:
    """The component ``name`` of ``kind``; a clear error listing valid names otherwise."""
    comps = components(kind)
    if name not in comps:
        valid = ", ".join(sorted(comps)) or "(none installed)"
        loc = f" at {where}" if where else ""
        raise PluginError(f"unknown {kind} {name!r}{loc}; valid choices: {valid}")
    return comps[name]


def _entry_options(entry: Any) -> tuple[Any, dict[str, Any]]:
    """(name, options) of a spec entry: a validated slot model, a ``{"name": ...}`` dict or a name."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        options = dict(entry)
        return options.pop("name", None), options
    if hasattr(entry, "model_dump"):
        # model_dump(mode="python") keeps nested slot entries as their validated models; the
        # component's Config revalidates them, so a nested component keeps its own Config type
        options = {k: getattr(entry, k) for k in type(entry).model_fields if k != "name"}
        return getattr(entry, "name", None), options
    raise SpecError(f"cannot read a component from {type(entry).__name__} {entry!r}")


def _format_validation(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in exc.errors())


def resolve(kind: str, entry: Any, *, where: str = "", source: str = "") -> tuple[Component, BaseModel]:
    """(component, validated Config) of one spec entry of ``kind``.

    ``entry`` is a validated slot section (``spec.model``), a dict with a ``name`` key, or a bare
    name. ``where`` is the dotted spec path and ``source`` the spec file, both quoted in errors:
    ``<source>: <where>.name: unknown architecture 'x'; valid choices: ...``.
    """
    from pydantic import ValidationError

    prefix = f"{source}: " if source else ""
    name, options = _entry_options(entry)
    if not name:
        raise SpecError(f"{prefix}{where or kind}: missing 'name' selecting {with_article(kind)}; valid choices: "
                        f"{', '.join(sorted(components(kind))) or '(none installed)'}")
    comps = components(kind)
    if name not in comps:
        raise SpecError(f"{prefix}{where + '.name' if where else kind}: unknown {kind} {name!r}; valid choices: "
                        f"{', '.join(sorted(comps)) or '(none installed)'}")
    comp = comps[name]
    try:
        config = comp.Config(**options)
    except ValidationError as exc:
        raise SpecError(f"{prefix}{where or kind} ({kind} {name!r}): invalid options: {_format_validation(exc)}") from None
    return comp, config


def build(kind: str, entry: Any, *, where: str = "", source: str = "") -> Any:
    """Instantiate one spec entry of ``kind``: ``impl(Config(**options))``.

    The one place a spec entry becomes a component instance (an architecture's ``nn.Module``,
    a preprocessor callable, an evaluator, an executor, ...); errors as :func:`resolve`.
    """
    comp, config = resolve(kind, entry, where=where, source=source)
    return comp.impl(config)


def plugin_distributions() -> list[tuple[str, str, str]]:
    """``(plugin name, distribution, version)`` for every loaded plugin."""
    pm = get_plugin_manager()
    return sorted({_provider(pm, p) for p in pm.get_plugins()})


# --- hook calls other than registration --------------------------------------------------------


def register_commands(app: Any) -> None:
    get_plugin_manager().hook.register_commands(app=app)


#: lifecycle-hook failures since start-up, per ``(plugin name, hook name)``
_lifecycle_failures: dict[tuple[str, str], int] = {}


def _notify(hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of a lifecycle hook on its own: one that raises is reported as a
    :class:`~dhs_core.errors.LifecycleHookWarning` and counted, and the others still run. Only
    ``Exception`` is caught — Ctrl-C and SystemExit still stop the run."""
    import warnings

    from dhs_core.errors import LifecycleHookWarning

    caller = getattr(get_plugin_manager().hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):  # pluggy's call order
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:
            key = (impl.plugin_name, hook_name)
            _lifecycle_failures[key] = _lifecycle_failures.get(key, 0) + 1
            warnings.warn(f"{hook_name} of plugin {impl.plugin_name!r} failed ({type(exc).__name__}: {exc}); "
                          "the run goes on", LifecycleHookWarning, stacklevel=2)


def lifecycle_failures() -> dict[tuple[str, str], int]:
    """How many times each ``(plugin, lifecycle hook)`` raised since start-up."""
    return dict(_lifecycle_failures)


def notify_run_started(run: Any) -> None:
    _notify("dhs_run_started", run=run)


def notify_epoch_end(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    _notify("dhs_epoch_end", run=run, epoch=epoch, metrics=metrics)


def notify_run_finished(run: Any, results: dict[str, Any]) -> None:
    _notify("dhs_run_finished", run=run, results=results)


def blocked(names: Iterable[str]) -> list[str]:
    pm = get_plugin_manager()
    return [n for n in names if pm.is_blocked(n)]
