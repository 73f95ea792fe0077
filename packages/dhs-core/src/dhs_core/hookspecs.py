"""Every hook of Dark Halo Scope, in one module (rendered into docs/hooks.md by dhs_core.docgen).

Registration hooks receive a ``register`` callback (a :class:`dhs_core.components.Registrar`)
and return nothing: a plugin registers by calling it, never by import side effects. ``impl`` may
be the object or a ``"module:attr"`` string imported on first use; with a string, only the
``Config`` class is imported at registration, so it lives in a module free of torch,
matplotlib, scikit-learn and scipy.
Lifecycle hooks are notifications for loggers and trackers; their return values are ignored.

Changing a hookspec is at least a minor version bump of dhs-core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dhs_core.components import Registrar
    from dhs_core.runner import Run

hookspec = pluggy.HookspecMarker("dhs")
hookimpl = pluggy.HookimplMarker("dhs")

# ---------------------------------------------------------------------------------------------
# Registration hooks
# ---------------------------------------------------------------------------------------------


@hookspec
def register_data_sources(register: Registrar) -> None:
    """Register data sources: components that write a manifest and a cutout store.

    :param register: call ``register(name, impl, config=Config)`` once per data source
        (``impl`` an object or a ``"module:attr"`` string, imported on first use).
        ``impl`` follows the data-source protocol of dhs-data.

    The return value is ignored.
    """


@hookspec
def register_preprocessors(register: Registrar) -> None:
    """Register preprocessors: per-cutout normalisations applied before a model sees pixels.

    :param register: call ``register(name, impl, config=Config)`` once per preprocessor.
        ``impl`` follows the preprocessor protocol of dhs-data.

    The return value is ignored.
    """


@hookspec
def register_architectures(register: Registrar) -> None:
    """Register model architectures (3 channels in, 1 logit out).

    :param register: call ``register(name, impl, config=Config)`` once per architecture;
        ``impl(config)`` returns a ``torch.nn.Module``.

    The return value is ignored.
    """


@hookspec
def register_losses(register: Registrar) -> None:
    """Register losses and loss weightings used by the trainer.

    :param register: call ``register(name, impl, config=Config)`` once per loss.

    The return value is ignored.
    """


@hookspec
def register_injectors(register: Registrar) -> None:
    """Register injection models that paint simulated lensed arcs into host cutouts.

    :param register: call ``register(name, impl, config=Config)`` once per injector.

    The return value is ignored.
    """


@hookspec
def register_evaluators(register: Registrar) -> None:
    """Register evaluators, selected by ``[[evaluate]]`` entries of a run spec.

    :param register: call ``register(name, impl, config=Config)`` once per evaluator.

    The return value is ignored.
    """


@hookspec
def register_executors(register: Registrar) -> None:
    """Register executors that run a stage's independent tasks (``map(fn, tasks)``).

    :param register: call ``register(name, cls, config=Config)``; ``cls(config)`` returns a
        :class:`dhs_core.executors.Executor`.

    The return value is ignored.
    """


@hookspec
def register_stages(register: Registrar) -> None:
    """Register pipeline stages (``data``, ``train``, ``evaluate``, ...).

    :param register: call ``register(name, stage)`` where ``stage`` is a
        :class:`dhs_core.stages.Stage` declaring the artifacts it needs and produces and the
        spec sections it owns.

    The return value is ignored.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add subcommands to the ``dhs`` command line.

    :param app: the root ``typer.Typer`` application; call ``app.command()`` or
        ``app.add_typer()`` on it.

    The return value is ignored.
    """


# ---------------------------------------------------------------------------------------------
# Lifecycle hooks (loggers, trackers)
#
# Each implementation is called on its own: one that raises becomes a LifecycleHookWarning and
# is counted (dhs_core.plugins.lifecycle_failures), and never stops the run.
# ---------------------------------------------------------------------------------------------


@hookspec
def dhs_run_started(run: Run) -> None:
    """Called once when a run starts, after its spec is validated and provenance written.

    :param run: the :class:`dhs_core.runner.Run` (resolved spec, run directory, seeds).

    The return value is ignored; an exception is a warning, never a failed run.
    """


@hookspec
def dhs_epoch_end(run: Run, epoch: int, metrics: dict[str, float]) -> None:
    """Called by a training stage at the end of every epoch.

    :param run: the current :class:`dhs_core.runner.Run`.
    :param epoch: the epoch just finished, counting from 1 (the ``epoch`` of that row of
        ``train/metrics.jsonl``).
    :param metrics: that epoch's metrics (train loss, val loss, val AUC, lr, ...).

    The return value is ignored; an exception is a warning, never a failed run.
    """


@hookspec
def dhs_run_finished(run: Run, results: dict[str, Any]) -> None:
    """Called once when a run ends successfully.

    :param run: the finished :class:`dhs_core.runner.Run`.
    :param results: headline metrics of every stage, keyed ``"<stage>.<metric>"``.

    The return value is ignored; an exception is a warning, never a failed run.
    """
