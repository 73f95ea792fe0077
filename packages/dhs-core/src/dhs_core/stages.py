"""Stages: the plugin kind the pipeline runner composes (docs/architecture.md, "From spec to stages").

A stage declares

* ``sections`` — the top-level spec sections it owns, each a pydantic model or a
  :class:`~dhs_core.spec.Slot` (a component chosen by ``name``). Plugins add sections to the
  run-spec model this way; core knows none of them in advance. Owned sections are hashed into
  the stage's input hash unless declared ``Section(..., hashed=False)``;
* ``trigger`` — the section whose presence enables the stage (``None``: always enabled);
* ``needs`` / ``produces`` — artifact paths relative to the run directory. The runner orders
  stages by them and skips a stage whose ``produces`` exist for the same input hash;
* ``inputs`` — extra spec sections (owned by other stages) that change its outputs; they are
  hashed into its input hash together with its own sections, the distribution and version of
  every component those sections select, ``run.seed`` and the completion tokens of the stages
  that produce what it needs. A stage hashes only what it reads: listing a section it does not
  use would rerun it for nothing;
* ``after`` — soft ordering: run after these stages when they are enabled;
* ``artifacts`` — named artifacts it writes (``{"manifest": "data/manifest.parquet"}``). The
  writing package defines each path once, as a constant; a reader that may import the writer
  imports the constant, and one the package arrows keep apart (dhs-eval reading what the train
  stage wrote) asks :func:`artifact` by stage and key;
* ``distributed`` — ``True`` for a stage whose computation spans every process of a
  ``torchrun`` launch (the ``train`` stage). Ranks > 0 run only such stages and write nothing of
  the runner's; before one, every rank calls ``join(ctx, runs)``, where rank 0 passes whether it
  runs the stage and every rank returns rank 0's answer (the train stage joins the process group
  there and broadcasts it). Other stages run on rank 0 alone (:mod:`dhs_core.distributed`).

``run(ctx)`` does the work and returns headline metrics (``{"auc": 0.97}``) or ``None``. When
``ctx.fresh`` is true (``dhs run --force``) it starts from scratch: no resume from checkpoints,
finished cells or other partial work of an earlier run.
``fingerprint(spec, run_dir)`` digests inputs the spec only names (a manifest file, a store
index): it is hashed into the input hash, so an input changed in place reruns the stage.
``estimate_bytes(spec)`` is what the stage will write, or ``None``; ``dhs run`` refuses to start
when the output filesystem has less free space than the enabled stages need.
``check(spec, run_dir, source)`` runs for every enabled stage before any stage writes (``dhs
run`` and ``dhs validate`` alike): raise :class:`~dhs_core.errors.SpecError` for a spec that
would fail later. ``card_section(run_dir)`` returns this stage's part of MODEL_CARD.md
(Markdown, starting with a ``##`` heading) or ``None``; the report stage asks every enabled
stage, third-party ones included; ``sweep_section(base_dir, run_dirs)`` likewise adds to a
sweep's comparison.md.
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
    #: False for a section the stage only checks before a run (in ``check``) while its outputs
    #: do not depend on it: the section is then left out of the stage's input hash, so changing
    #: it does not rerun the stage
    hashed: bool = True
    #: for a ``Slot`` section: a component name that an array of tables (``[[section]]``) is read
    #: as, the list becoming its ``steps`` option (``[[preprocess]]`` -> ``chain``); None: one table
    list_as: str | None = None


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
    artifacts: ClassVar[Mapping[str, str]] = {}
    #: True for a stage whose computation spans every process of a ``torchrun`` launch (DDP
    #: training): ranks > 0 run only such stages, and only when rank 0 runs them (see ``join``)
    distributed: ClassVar[bool] = False

    def run(self, ctx: StageContext) -> Mapping[str, float] | None:  # pragma: no cover
        """Do the stage's work, writing every ``produces`` artifact; return headline metrics or None."""
        raise NotImplementedError

    def check(self, spec: Any, run_dir: Path, source: str) -> None:
        """Pre-run checks of the spec (and of inputs that already exist); nothing may be written."""

    def card_section(self, run_dir: Path) -> str | None:
        """This stage's section of MODEL_CARD.md (Markdown), or None to add nothing."""
        return None

    def sweep_section(self, base_dir: Path, run_dirs: list[Path]) -> str | None:
        """This stage's part of a sweep's comparison.md (Markdown), after the runner's table of
        headline metrics, or None to add nothing. Asked of every stage the sweep enabled."""
        return None

    def fingerprint(self, spec: Any, run_dir: Path) -> Any:
        """JSON-able digest of the external inputs the stage reads (files the spec names), or
        None. Part of the input hash: it must be cheap (sizes, mtimes, a digest of an index) and
        must not read every cutout."""
        return None

    def estimate_bytes(self, spec: Any) -> int | None:
        """Bytes the stage will write into the run directory (an upper estimate), or None."""
        return None

    def join(self, ctx: StageContext, runs: bool) -> bool:
        """For a ``distributed`` stage in a multi-process launch, called on every rank before the
        stage: rank 0 passes whether it runs the stage (ranks > 0 pass False) and every rank
        returns rank 0's answer. Ranks > 0 only know what to do once rank 0 has run the stages
        before this one, so this is also where they wait for it (a collective of the stage's
        own framework; dhs-core has none)."""
        return runs


def artifact(stage: str, key: str) -> str:
    """Path (relative to the run directory) of the artifact ``key`` that stage ``stage`` writes.

    For readers that may not import the writing package; others import its constant.
    """
    from dhs_core import plugins
    from dhs_core.errors import PluginError

    comp = plugins.components("stage").get(stage)
    if comp is None:
        raise PluginError(f"artifact {key!r} of stage {stage!r}: no stage {stage!r} is installed; "
                          f"stages: {', '.join(sorted(plugins.components('stage')))}")
    known = dict(getattr(comp.impl, "artifacts", {}) or {})
    if key not in known:
        raise PluginError(f"stage {stage!r} ({comp.distribution}) declares no artifact {key!r}; "
                          f"it declares: {', '.join(sorted(known)) or '(none)'}")
    return known[key]


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
    #: ``dhs run --force``: start from scratch, resume nothing an earlier run left behind
    fresh: bool = False

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
