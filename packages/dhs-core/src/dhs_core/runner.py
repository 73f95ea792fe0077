"""The pipeline runner: orders stages, hashes inputs, resumes, records provenance.

A stage's *input hash* is the SHA-256 of: its name and provider version, the resolved spec
sections it owns (except those declared ``hashed=False``) or lists in ``inputs`` (and no others), the distribution and version of every
component those sections select (upgrading an architecture plugin reruns ``train`` and what
follows, nothing else), ``run.seed``, and the completion tokens of the stages that produce what
it needs. A stage is skipped when its state file (``.dhs/stages/<name>.json``) records the same
input hash and every artifact it produces exists. Rerunning an upstream stage gives it a new
completion token, so everything downstream reruns on the next ``dhs run``.

:func:`plan` is everything ``dhs run`` checks before it writes anything — spec, pins, lock
file, stage order, each stage's own ``check`` — and ``dhs validate`` calls the same function.

Under ``torchrun`` rank 0 is the run (lock, stages, state, provenance, log); ranks > 0 take part
only in ``distributed`` stages and write nothing (:func:`_follow_point`).
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel

from dhs_core import distributed, io, layout, plugins, provenance, rundir
from dhs_core import gates as gates_mod
from dhs_core.errors import DhsError, InterruptedRun, SpecError, StageError
from dhs_core.executors import LocalExecutor
from dhs_core.requirements import check_lock, check_requires
from dhs_core.spec import SpecPoint, enabled_stages, load_spec, resolved_dict
from dhs_core.stages import Progress, StageContext


@dataclass
class Run:
    """One run (one sweep point): what stages and lifecycle hooks see."""

    spec: Any
    run_dir: Path
    spec_path: Path | None = None
    assignments: dict[str, Any] = field(default_factory=dict)
    command: Sequence[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def seed(self) -> int:
        return self.spec.run.seed

    @property
    def name(self) -> str:
        return self.spec.run.name


@dataclass
class RunResult:
    """What :func:`run` returns. For a sweep, ``points`` holds one result per point."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # name -> "ran" | "skipped" | "not selected"
    points: list[RunResult] = field(default_factory=list)
    assignments: dict[str, Any] = field(default_factory=dict)
    #: one record per ``[[gates]]`` entry (dhs_core.gates.evaluate_gate); empty without gates
    gates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gates_failed(self) -> bool:
        """True when a gate of this run, or of any sweep point, did not pass (failed or missing)."""
        return not gates_mod.passed(self.gates) or any(p.gates_failed for p in self.points)


def order_stages(comps: list[plugins.Component]) -> list[plugins.Component]:
    """Topological order by needs/produces and ``after``; ties broken by name."""
    by_name = {c.name: c for c in comps}
    producers: dict[str, str] = {}
    for c in comps:
        for art in c.impl.produces:
            producers[art] = c.name
    deps: dict[str, set[str]] = {c.name: set() for c in comps}
    for c in comps:
        for art in (*c.impl.needs, *getattr(c.impl, "optional_needs", ())):
            if art in producers and producers[art] != c.name:
                deps[c.name].add(producers[art])
        for a in c.impl.after:
            if a in by_name and a != c.name:
                deps[c.name].add(a)
    out: list[plugins.Component] = []
    ready = sorted(n for n, d in deps.items() if not d)
    remaining = {n: set(d) for n, d in deps.items()}
    while ready:
        n = ready.pop(0)
        out.append(by_name[n])
        remaining.pop(n)
        for m, d in remaining.items():
            if n in d:
                d.discard(n)
                if not d and m not in ready:
                    ready.append(m)
        ready.sort()
    if remaining:
        raise SpecError(f"stages form a dependency cycle: {', '.join(sorted(remaining))}")
    return out


def _state_path(run_dir: Path, stage: str) -> Path:
    return run_dir / layout.STATE_DIR / f"{stage}.json"


def _read_state(run_dir: Path, stage: str) -> dict[str, Any] | None:
    p = _state_path(run_dir, stage)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def input_hash(
    comp: plugins.Component, spec: BaseModel, upstream_tokens: dict[str, str], fingerprint: Any = None
) -> str:
    data = resolved_dict(spec)
    owned = [s for s, section in comp.impl.sections.items() if getattr(section, "hashed", True)]
    sections = sorted({*owned, *comp.impl.inputs})
    selected = provenance.components_in(spec, sections)
    payload = {
        "stage": comp.name,
        "provider": f"{comp.distribution}=={comp.version}",
        "seed": spec.run.seed,
        "sections": {s: data.get(s) for s in sections},
        "components": sorted(f"{kind}:{name}={c.distribution}=={c.version}" for (kind, name), c in selected.items()),
        "upstream": dict(sorted(upstream_tokens.items())),
    }
    if fingerprint is not None:
        # external inputs the spec only names (a manifest changed in place reruns the stage)
        payload["fingerprint"] = fingerprint
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _stage_order(spec: BaseModel, run_dir: Path, source: str) -> list[plugins.Component]:
    comps = order_stages(enabled_stages(spec))
    produced: set[str] = set()
    for c in comps:
        for art in c.impl.needs:
            if art not in produced and not (run_dir / art).exists():
                providers = [s for s in plugins.components("stage").values() if art in s.impl.produces]
                hint = (f"; stage {providers[0].name!r} produces it — add its section [{providers[0].impl.trigger}]"
                        if providers else "")
                raise SpecError(f"{source}: stage {c.name!r} needs {art}, which no enabled stage produces{hint}")
        produced.update(c.impl.produces)
    for c in comps:
        c.impl.check(spec, run_dir, source)
    return comps


@dataclass
class Plan:
    """What :func:`run` will do: validated sweep points, their run directories and stage order."""

    points: list[SpecPoint]
    run_dirs: list[Path]
    stages: list[list[plugins.Component]]
    spec_path: Path | None
    base_dir: Path

    @property
    def source(self) -> str:
        return str(self.spec_path or "<spec>")


def plan(
    spec_path_or_model: str | Path | BaseModel | dict,
    overrides: Iterable[str] = (),
    *,
    executor: str | None = None,
) -> Plan:
    """Validate a spec and everything a run checks before writing: pins, lock file (relative to
    the spec file), stage dependencies and each enabled stage's ``check``. Writes nothing."""
    overrides = list(overrides)
    if executor:  # first, so that --set executor.* overrides still apply to the named executor
        overrides.insert(0, f"executor={{ name = {json.dumps(executor)} }}")
    spec_path = Path(spec_path_or_model) if isinstance(spec_path_or_model, (str, Path)) else None
    points = load_spec(spec_path_or_model, overrides)
    source = str(spec_path or "<spec>")
    # Pins and lock files first: nothing is written when they fail.
    first = points[0].spec
    check_requires(first.requires, source)
    if first.run.lock:
        lock = Path(first.run.lock)
        if spec_path is not None and not lock.is_absolute():
            lock = spec_path.parent / lock
        check_lock(lock, source)
    base = Path(first.run.out_dir or Path("runs") / first.run.name)
    rundir.check_out_dir(base, source)
    if len(points) > 1:
        dirs = [base / f"{i:03d}_{p.name or _slug(p.assignments)}" for i, p in enumerate(points)]
    else:
        dirs = [base]
    stages = [_stage_order(p.spec, d, source) for p, d in zip(points, dirs)]
    return Plan(points, dirs, stages, spec_path, base)


def _make_executor(spec: BaseModel) -> Any:
    return plugins.build("executor", spec.executor, where="executor")


def _run_point(
    point: SpecPoint,
    run_dir: Path,
    comps: list[plugins.Component],
    *,
    spec_path: Path | None,
    only: set[str],
    force: bool,
    progress: Progress,
    log: Callable[[str], None],
    command: Sequence[str] | None,
) -> RunResult:
    spec = point.spec
    unknown = only - {c.name for c in plugins.components("stage").values()}
    if unknown:
        raise SpecError(
            f"--stage {', '.join(sorted(unknown))}: no such stage; stages: {', '.join(sorted(plugins.components('stage')))}"
        )
    not_enabled = only - {c.name for c in comps}
    if not_enabled:
        raise SpecError(f"--stage {', '.join(sorted(not_enabled))}: not enabled by this spec (its section is absent)")
    # absolute: executor tasks carry paths below the run directory to workers that may start in
    # another directory (a PBS job starts in $HOME, a Dask worker wherever it was launched)
    run_dir = run_dir.absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.remove_stale_temporaries(run_dir)
    log = _file_log(run_dir / layout.LOG, log)
    run = Run(spec, run_dir, spec_path, point.assignments, list(command if command is not None else sys.argv))
    info = provenance.write_start(run, [c.name for c in comps])
    # a verdict of an earlier run must not outlive it: gates.json exists only for a run that finished
    (run_dir / layout.GATES).unlink(missing_ok=True)
    plugins.notify_run_started(run)
    executor = _make_executor(spec)
    executor.log = log
    result = RunResult(run_dir, assignments=point.assignments)
    tokens: dict[str, str] = {}
    producers = {a: c.name for c in comps for a in c.impl.produces}
    current = ""
    try:
        for comp in comps:
            stage = comp.impl
            upstream = {
                producers[a]: tokens.get(producers[a], "")
                for a in (*stage.needs, *stage.optional_needs)
                if a in producers and producers[a] != comp.name
            }
            for a in stage.after:
                if a in tokens:
                    upstream[a] = tokens[a]
            h = input_hash(comp, spec, upstream, stage.fingerprint(spec, run_dir))
            state = _read_state(run_dir, comp.name)
            done = (
                state is not None
                and state.get("input_hash") == h
                and all((run_dir / a).exists() for a in stage.produces)
            )
            selected = not only or comp.name in only
            runs = selected and not (done and not force and comp.name not in only)
            ctx = StageContext(run=run, stage_name=comp.name, executor=executor, progress=progress, log=log,
                               fresh=force)
            if stage.distributed and distributed.is_distributed():
                stage.join(ctx, runs)  # ranks > 0 wait there for this rank, and learn whether it runs
            if not runs:
                tokens[comp.name] = (state or {}).get("token", "")
                result.stages[comp.name] = "skipped" if done else "not selected"
                result.metrics.update({f"{comp.name}.{k}": v for k, v in ((state or {}).get("metrics") or {}).items()})
                info["stages"][comp.name] = {**(state or {}).get("timing", {}), "status": result.stages[comp.name]}
                log(f"stage {comp.name}: {'up to date, skipped' if done else 'not selected'}")
                continue
            log(f"stage {comp.name}: running" + (" from scratch (--force)" if force else ""))
            current = comp.name
            started, t0 = provenance.now(), time.perf_counter()
            info["stages"][comp.name] = {"started": started, "status": "running"}
            io.write_json(run_dir / layout.RUN_INFO, info)
            # a stage that reruns is no longer complete: drop its state first, so a run killed
            # half-way never pairs the old state with new, partial outputs
            _state_path(run_dir, comp.name).unlink(missing_ok=True)
            try:
                metrics = dict(stage.run(ctx) or {})
            except DhsError:
                raise
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                _log_traceback(run_dir, comp.name)
                failed_write = rundir.write_failure(exc)
                if failed_write:
                    raise StageError(f"stage {comp.name!r}: {failed_write}; see {run_dir / layout.LOG}") from exc
                raise StageError(
                    f"stage {comp.name!r} failed: {type(exc).__name__}: {exc} "
                    f"(traceback in {run_dir / layout.LOG})"
                ) from exc
            missing = [a for a in stage.produces if not (run_dir / a).exists()]
            if missing:
                raise StageError(f"stage {comp.name!r} finished without producing {', '.join(missing)}")
            timing = {"started": started, "finished": provenance.now(), "seconds": round(time.perf_counter() - t0, 3)}
            token = hashlib.sha256(f"{h}/{timing['finished']}".encode()).hexdigest()
            io.write_json(
                _state_path(run_dir, comp.name),
                {"input_hash": h, "token": token, "timing": timing, "metrics": metrics},
            )
            tokens[comp.name] = token
            info["stages"][comp.name] = {**timing, "status": "ran"}
            result.stages[comp.name] = "ran"
            result.metrics.update({f"{comp.name}.{k}": v for k, v in metrics.items()})
            io.write_json(run_dir / layout.RUN_INFO, info)
            current = ""
        _evaluate_gates(spec, result, run_dir, log)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            exc = InterruptedRun(signal.SIGINT)
        interrupted = isinstance(exc, InterruptedRun)
        status = "interrupted" if interrupted else "failed"
        info["status"] = status
        info["finished"] = provenance.now()
        if current:
            info["stages"][current]["status"] = status
        if not interrupted and not isinstance(exc, DhsError) and isinstance(exc, Exception):
            _log_traceback(run_dir, current or "runner")
        try:
            io.write_json(run_dir / layout.RUN_INFO, info)
        except OSError:
            pass  # the directory itself is what failed (read-only, full): the error below says so
        # the log file gets the outcome; the console gets it once, from the CLI's error line
        _append_log(run_dir / layout.LOG, f"{status}" + (f" in stage {current}" if current else "") + f": {exc}")
        if interrupted and exc is not sys.exc_info()[1]:
            raise exc from None
        failed_write = rundir.write_failure(exc)
        if failed_write and not isinstance(exc, DhsError):
            raise StageError(f"{failed_write}; the run stopped{f' in stage {current!r}' if current else ''}, "
                             "finished stages are kept") from exc
        raise
    finally:
        executor.close()  # a Dask executor's cluster and connections end with the run point
    info.update(provenance.torch_info())
    info["status"] = "finished"
    info["finished"] = provenance.now()
    info["results"] = result.metrics
    if result.gates:
        info["gates"] = result.gates
    io.write_json(run_dir / layout.RUN_INFO, info)
    log("finished")
    plugins.notify_run_finished(run, result.metrics)
    return result


def _follow_point(
    point: SpecPoint,
    run_dir: Path,
    comps: list[plugins.Component],
    *,
    spec_path: Path | None,
    force: bool,
    progress: Progress,
    command: Sequence[str] | None,
) -> RunResult:
    """A rank > 0 of a ``torchrun`` launch: take part in the ``distributed`` stages that rank 0
    runs, in the same order, and write nothing else — no log, state file, provenance or lifecycle
    hook — so every artifact of the run has exactly one writer. Rank 0 decides what runs (its
    input hashes read state files it may be rewriting), and tells the others in ``join``."""
    run = Run(point.spec, run_dir, spec_path, point.assignments, list(command if command is not None else sys.argv))
    result = RunResult(run_dir, assignments=point.assignments)
    for comp in comps:
        if not comp.impl.distributed:
            continue
        # in-process executor: a distributed stage computes through its own framework, and a
        # cluster the spec names is rank 0's to start
        ctx = StageContext(run=run, stage_name=comp.name, executor=LocalExecutor(), progress=progress,
                           log=lambda msg: None, fresh=force)
        if comp.impl.join(ctx, False):
            comp.impl.run(ctx)
            result.stages[comp.name] = f"ran on rank {distributed.rank()}"
    return result


def _evaluate_gates(spec: BaseModel, result: RunResult, run_dir: Path, log: Callable[[str], None]) -> None:
    """Evaluate ``[[gates]]`` on the run's headline metrics (skipped stages' come from their state,
    so a rerun that only changes gates re-evaluates them without running a stage) and write
    gates.json. The report stage computes the card's gate table with the same function."""
    if not spec.gates:
        return
    result.gates = gates_mod.evaluate(spec.gates, result.metrics, run_dir)
    io.write_json(run_dir / layout.GATES, gates_mod.summary(result.gates))
    for record in result.gates:
        log(gates_mod.log_line(record))


def _file_log(path: Path, log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` that also appends each message, time-stamped, to the run's log file."""

    def both(msg: str) -> None:
        log(msg)
        _append_log(path, msg)

    return both


def _append_log(path: Path, msg: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{provenance.now()} {msg}\n")
    except OSError:
        pass  # a full or read-only disk: the failure itself is reported, not the log line


def _log_traceback(run_dir: Path, where: str) -> None:
    try:
        with open(run_dir / layout.LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{provenance.now()} traceback of the failure in {where}:\n{traceback.format_exc()}")
    except OSError:
        pass


def _slug(assignments: dict[str, Any]) -> str:
    parts = []
    for k, v in assignments.items():
        val = json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v
        parts.append(f"{k.split('.')[-1]}={val}")
    s = re.sub(r"[^A-Za-z0-9_.=,\-]+", "_", "_".join(parts)).strip("_")
    return s[:80]


def _write_comparison(out_dir: Path, results: list[RunResult], comps: Sequence[plugins.Component] = ()) -> None:
    keys = list(dict.fromkeys(k for r in results for k in r.assignments))
    metrics = sorted({m for r in results for m, v in r.metrics.items() if isinstance(v, (int, float))})
    header = ["point", *keys, "run_dir", *metrics]
    rows = []
    for i, r in enumerate(results):
        rows.append([i, *(json.dumps(r.assignments.get(k)) for k in keys), str(r.run_dir.relative_to(out_dir)),
                     *(r.metrics.get(m, "") for m in metrics)])
    buf = _io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    io.write_text(out_dir / layout.COMPARISON_CSV, buf.getvalue())

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    # stages add their own comparison (the report stage: intervals, paired tests, curves)
    extra = [text.strip("\n") for c in comps if (text := c.impl.sweep_section(out_dir, [r.run_dir for r in results]))]
    io.write_text(out_dir / layout.COMPARISON_MD,
                  "# Sweep comparison\n\n" + "\n".join(md) + "\n" + "".join(f"\n{t}\n" for t in extra))


def run(
    spec_path_or_model: str | Path | BaseModel | dict,
    overrides: Iterable[str] = (),
    *,
    stages: Iterable[str] = (),
    force: bool = False,
    executor: str | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
    check_space: bool = True,
) -> RunResult:
    """Run a spec (path, dict or validated model) and return its headline metrics.

    ``overrides`` are ``"a.b=value"`` strings; ``stages`` reruns only the named stages;
    ``force`` reruns every enabled stage from scratch; ``executor`` replaces ``[executor]`` by
    name; ``check_space`` refuses to start when the output filesystem is short of what the stages
    estimate they will write. The run directory is locked while the run writes it.
    """
    the_plan = plan(spec_path_or_model, overrides, executor=executor)
    log = log or (lambda msg: None)
    progress = progress or Progress()
    if check_space:
        needed = 0
        for p, d, comps in zip(the_plan.points, the_plan.run_dirs, the_plan.stages):
            for c in comps:
                if force or not _probably_done(d, c):
                    needed += int(c.impl.estimate_bytes(p.spec) or 0)
        rundir.check_free_space(the_plan.base_dir, needed, the_plan.source)
    results = []
    many = len(the_plan.points) > 1
    if not distributed.is_main():
        # no lock: rank 0 holds it for the whole launch, and the other ranks write nothing
        with rundir.signals_raise():
            for p, d, comps in zip(the_plan.points, the_plan.run_dirs, the_plan.stages):
                results.append(_follow_point(p, d, comps, spec_path=the_plan.spec_path, force=force,
                                             progress=progress, command=command))
        return results[0] if not many else RunResult(the_plan.base_dir, stages={}, points=results)
    cmd = list(command if command is not None else sys.argv)
    the_plan.base_dir.mkdir(parents=True, exist_ok=True)
    with rundir.RunLock(the_plan.base_dir, command=cmd, warn=lambda m: log(f"warning: {m}")), rundir.signals_raise():
        for p, d, comps in zip(the_plan.points, the_plan.run_dirs, the_plan.stages):
            if many:
                log(f"sweep point {d.name}: {p.assignments}")
            results.append(
                _run_point(p, d, comps, spec_path=the_plan.spec_path, only=set(stages), force=force,
                           progress=progress, log=log, command=command)
            )
        if not many:
            return results[0]
        _write_comparison(the_plan.base_dir, results, the_plan.stages[0])
    return RunResult(the_plan.base_dir, stages={}, points=results)


def _probably_done(run_dir: Path, comp: plugins.Component) -> bool:
    """A stage that finished before (state recorded, outputs present) will likely be skipped and
    write nothing; only for the free-space estimate, which must not hash inputs."""
    return _state_path(run_dir, comp.name).is_file() and all((run_dir / a).exists() for a in comp.impl.produces)
