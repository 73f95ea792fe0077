"""Stages: the plugin kind the pipeline runner composes (DESIGN.md §4).

A stage declares

* ``sections`` — the top-level spec sections it owns, each a pydantic model or a
  :class:`~dhs_core.spec.Slot` (a component chosen by ``name``). Plugins add sections to the
  run-spec model this way; core knows none of them in advance.
* ``trigger`` — the section whose presence enables the stage (``None``: always enabled);
* ``needs`` / ``produces`` — artifact paths relative to the run directory. The runner orders
  stages by them and skips a stage whose ``produces`` exist for the same input hash;
* ``inputs`` — extra spec sections (owned by other stages) that change its outputs; they are
  hashed into its input hash together with its own sections, ``run.seed`` and the hashes of
  the stages that produce what it needs;
* ``after`` — soft ordering: run after these stages when they are enabled.

``run(ctx)`` does the work and returns headline metrics (``{"auc": 0.97}``) or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from dhs_core.seeds import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from dhs_core.executors import Executor
    from dhs_core.runner import Run


@dataclass(frozen=True)
class Section:
    """A top-level spec section owned by a stage."""

    #: a pydantic model class, or a ``Slot(kind)`` / ``Slot(kind, many=True)``
    type: Any
    #: when the stage is enabled, the section must be present
    required: bool = True
    #: one-line description shown in the JSON Schema
    description: str = ""


class Stage:
    """Base class of pipeline stages; subclass and register with ``register_stages``."""

    name: ClassVar[str] = ""
    sections: ClassVar[Mapping[str, Section]] = {}
    trigger: ClassVar[str | None] = None
    needs: ClassVar[tuple[str, ...]] = ()
    optional_needs: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[str, ...]] = ()
    after: ClassVar[tuple[str, ...]] = ()

    def run(self, ctx: StageContext) -> Mapping[str, float] | None:  # pragma: no cover
        raise NotImplementedError


class Progress:
    """Progress reporting without a UI dependency; the CLI swaps in a rich implementation."""

    def task(self, description: str, total: int | None = None) -> ProgressTask:
        return ProgressTask()


class ProgressTask:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> ProgressTask:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class StageContext:
    """What a running stage sees."""

    run: Run
    stage_name: str
    executor: Executor
    progress: Progress = field(default_factory=Progress)
    log: Callable[[str], None] = print

    @property
    def spec(self) -> Any:
        return self.run.spec

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def stage_dir(self) -> Path:
        d = self.run.run_dir / self.stage_name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def seed(self) -> int:
        return derive_seed(self.run.seed, self.stage_name)

    def seed_for(self, *names: str | int) -> int:
        return derive_seed(self.run.seed, self.stage_name, *names)

    def path(self, artifact: str) -> Path:
        return self.run.run_dir / artifact

    def section(self, name: str, default: Any = None) -> Any:
        return getattr(self.run.spec, name, default)

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        from dhs_core import plugins

        plugins.notify_epoch_end(self.run, epoch, metrics)
