"""The ``dask`` executor against ``local``: same results, same skipping, worker deaths survived."""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import dhs_core
from dhs_core import io, plugins
from dhs_core.errors import SpecError, StageError
from dhs_core.executors import LocalConfig, LocalExecutor
from dhs_core.hookspecs import hookimpl
from dhs_core.spec import load_spec
from dhs_core.stages import Section, Stage, StageContext
from dhs_core.testing import CountSource, FixturePlugin, registered

pytest.importorskip("distributed")

from dhs_core.dask_executor import DaskConfig, DaskExecutor  # noqa: E402


@dataclass
class Cube:
    value: int
    output: Path
    # a file whose absence makes the first attempt kill its worker process
    crash_marker: Path | None = None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def cube(task: Cube) -> int:
    if task.crash_marker is not None and not task.crash_marker.exists():
        task.crash_marker.write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies mid-task: no exception, no cleanup
    write_atomic(task.output, str(task.value**3))
    return task.value**3


@pytest.fixture(scope="module")
def executor():
    ex = DaskExecutor(DaskConfig(workers=2, threads_per_worker=1, retries=2))
    messages = []
    ex.log = messages.append
    ex.messages = messages
    yield ex
    ex.close()


def test_same_results_in_order_as_local_and_finished_tasks_skipped(tmp_path, executor):
    (tmp_path / "local").mkdir()
    (tmp_path / "dask").mkdir()
    local_tasks = [Cube(i, tmp_path / "local" / f"{i}.txt") for i in range(12)]
    dask_tasks = [Cube(i, tmp_path / "dask" / f"{i}.txt") for i in range(12)]
    for tasks in (local_tasks, dask_tasks):
        write_atomic(tasks[4].output, "done before")
    expected = LocalExecutor(LocalConfig(workers=2)).map(cube, local_tasks)
    assert expected == [i**3 if i != 4 else None for i in range(12)]
    assert executor.map(cube, dask_tasks, desc="cubes") == expected
    assert executor.last_stats == {"run": 11, "skipped": 1}
    for a, b in zip(local_tasks, dask_tasks):
        assert a.output.read_bytes() == b.output.read_bytes()
    # everything finished: a rerun runs nothing
    assert executor.map(cube, dask_tasks) == [None] * 12
    assert executor.last_stats == {"run": 0, "skipped": 12}
    assert executor.parallelism == 2
    # the cluster started once and said where it runs
    assert len(executor.messages) == 1 and "local cluster (2 workers x 1 threads)" in executor.messages[0]


def test_killed_worker_task_is_retried_and_written_once(tmp_path, executor):
    tasks = [Cube(i, tmp_path / f"{i}.txt") for i in range(4)]
    tasks[1].crash_marker = tmp_path / "crashed-once"
    assert executor.map(cube, tasks) == [0, 1, 8, 27]
    # the first attempt really died (its marker exists), the retry wrote the output
    assert tasks[1].crash_marker.read_text() != ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt", "2.txt", "3.txt", "crashed-once"]
    assert tasks[1].output.read_text() == "1"


def test_task_error_propagates_after_retries(tmp_path, executor):
    with pytest.raises(ZeroDivisionError):
        executor.map(divide_by_zero, [1, 2])


def divide_by_zero(x: int) -> float:
    return x / 0


def test_worker_threads_follow_torch_threads():
    ex = DaskExecutor(DaskConfig(workers=1, torch_threads=2))
    try:
        assert ex.map(thread_setting, [0, 1]) == [("2", 2), ("2", 2)]
    finally:
        ex.close()


def thread_setting(_: int) -> tuple[str, int | None]:
    try:
        import torch
    except ImportError:  # dhs-core alone: the environment variable is what a later import reads
        return os.environ["OMP_NUM_THREADS"], 2
    return os.environ["OMP_NUM_THREADS"], torch.get_num_threads()


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"worker": 2}, "worker"),
        ({"address": "tcp://127.0.0.1:8786", "workers": 2}, "not address and workers"),
        ({"address": "tcp://x:1", "jobqueue": {"kind": "slurm", "cores": 4, "memory": "8GB"}}, "address and jobqueue"),
        ({"jobqueue": {"kind": "lsf", "cores": 4, "memory": "8GB"}}, "jobqueue.kind"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_bad_options_are_spec_errors(options, fragment):
    spec = {"run": {"name": "x"}, "executor": {"name": "dask", **options}}
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert "executor" in str(err.value) and fragment in str(err.value)


def test_unreachable_scheduler_is_a_clear_error_within_the_timeout():
    ex = DaskExecutor(DaskConfig(address="tcp://127.0.0.1:1", connect_timeout=2))
    t0 = time.monotonic()
    with pytest.raises(StageError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1 within 2 s"):
        ex.map(cube, [Cube(1, Path("never-written.txt"))])
    assert time.monotonic() - t0 < 30  # the timeout, not distributed's default of minutes
    assert StageError.exit_code == 1
    ex.close()


def test_missing_dask_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(dhs_core.errors.UserError, match=r'pip install "dhs-core\[dask\]"'):
        plugins.build("executor", {"name": "dask"})


# --- a fixture stage that splits into executor tasks, run end to end through the runner -----


@dataclass
class PowerTask:
    value: int
    output: Path


def power(task: PowerTask) -> float:
    io.write_json(task.output, {"value": task.value, "power": task.value**5 / 7})
    return task.value**5 / 7


class PowersStage(Stage):
    name = "powers"
    sections = {"powers": Section(CountSource, description="fixture: one task per number")}
    trigger = "powers"
    produces = ("powers/summary.json",)

    def run(self, ctx: StageContext) -> dict[str, float]:
        cells = ctx.path("powers/cells")
        cells.mkdir(parents=True, exist_ok=True)
        tasks = [PowerTask(i, cells / f"{i:03d}.json") for i in range(ctx.spec.powers.n)]
        results = ctx.executor.map(power, tasks, progress=ctx.progress, desc="powers")
        io.write_json(ctx.path("powers/summary.json"), results)
        return {"total": float(sum(results))}


class PowersPlugin:
    @hookimpl
    def register_stages(self, register):
        register("powers", PowersStage())


def test_runner_end_to_end_byte_identical_to_local(tmp_path):
    outputs = {}
    with registered(FixturePlugin(), "fx", "dhs-fixtures", "1.0"), registered(PowersPlugin(), "fx-powers"):
        for name, executor in (("local", {"name": "local", "workers": 2}),
                               ("dask", {"name": "dask", "workers": 2, "threads_per_worker": 1})):
            out = tmp_path / name
            res = dhs_core.run({
                "run": {"name": "pipe", "seed": 5, "out_dir": str(out)},
                "numbers": {"name": "fx_count", "n": 3},
                "square": {},
                "powers": {"n": 9},
                "executor": executor,
            })
            assert res.stages == {"numbers": "ran", "square": "ran", "powers": "ran"}
            outputs[name] = {p.relative_to(out).as_posix(): p.read_bytes()
                             for p in sorted(out.rglob("*.json")) if p.parent.name in ("cells", "powers", "square")}
            assert res.metrics["powers.total"] == sum(i**5 / 7 for i in range(9))
            # the recorded spec reloads as it ran (unset cluster options are left out, not null)
            assert load_spec(out / "spec.resolved.toml")[0].spec.executor.name == name
    assert len(outputs["dask"]) == 9 + 2
    assert outputs["dask"] == outputs["local"]
    assert json.loads(outputs["dask"]["powers/summary.json"]) == [i**5 / 7 for i in range(9)]


def test_synthetic_survey_on_dask_matches_local(tmp_path, executor):
    # the synthetic source batches render chunks by Executor.parallelism; skipped where dhs-core
    # is tested alone
    source = pytest.importorskip("dhs_inject.synthetic.source")
    from dhs_inject.synthetic.config import SyntheticConfig

    cfg = SyntheticConfig(n_hosts=8, positive_fraction=0.25, chunk_size=4)
    source.generate(cfg, 5, tmp_path / "local", executor=LocalExecutor(LocalConfig(workers=1)))
    source.generate(cfg, 5, tmp_path / "dask", executor=executor)
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert files and "shards" in {f.parts[0] for f in files}
    for f in files:
        assert (tmp_path / "dask" / f).read_bytes() == (tmp_path / "local" / f).read_bytes(), f


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_jobqueue_job_script_books_cores_once(kind):
    """The batch script a SLURM/PBS job runs (built, never submitted): the job books ``cores``
    cores, account, queue, walltime, extra directives and prologue as given, and runs
    cores // torch_threads single-threaded Dask workers, so torch threads x workers = cores."""
    pytest.importorskip("dask_jobqueue")
    jq = {"kind": kind, "cores": 8, "memory": "16GB", "walltime": "02:30:00", "queue": "short", "account": "lens",
          "jobs": 3, "prologue": ["module load cuda"]}
    if kind == "slurm":
        jq["extra_directives"] = ["--gres=gpu:1"]
    load_spec({"run": {"name": "x"}, "executor": {"name": "dask", "torch_threads": 2, "jobqueue": jq}})  # a valid spec
    ex = DaskExecutor(DaskConfig(torch_threads=2, jobqueue=jq))
    assert ex.parallelism == 3 * 4
    cluster = ex.jobqueue_cluster()
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    worker = next(line for line in lines if "--nthreads" in line)
    assert "--nworkers 4" in worker and "--nthreads 1" in worker
    assert "module load cuda" in lines
    if kind == "slurm":
        for directive in ("#SBATCH -p short", "#SBATCH -A lens", "#SBATCH -t 02:30:00", "#SBATCH --cpus-per-task=8",
                          "#SBATCH --gres=gpu:1"):
            assert directive in lines, (directive, script)
    else:
        for directive in ("#PBS -q short", "#PBS -A lens", "#PBS -l walltime=02:30:00",
                          "#PBS -l select=1:ncpus=8:mem=16GB"):
            assert directive in lines, (directive, script)


def test_executor_flag_replaces_the_section_and_set_still_applies():
    """``--executor dask`` replaces the spec's [executor]; ``--set executor.*`` then sets its
    options (whatever the order on the command line)."""
    from dhs_core.runner import plan

    spec = {"run": {"name": "x"}, "executor": {"name": "local", "workers": 3}}
    executor = plan(spec, ["executor.workers=4", "executor.threads_per_worker=1"], executor="dask").points[0].spec.executor
    assert executor.name == "dask" and executor.workers == 4 and executor.threads_per_worker == 1
    assert plan(spec, [], executor="local").points[0].spec.executor.workers == 1  # replaced, not merged
