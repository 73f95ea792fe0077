"""The ``dask`` executor: a stage's tasks on Dask workers (this machine, a scheduler, SLURM/PBS).

Semantics are those of ``local`` (:mod:`dhs_core.executors`): the same picklable tasks, finished
tasks (``output`` exists) skipped and counted, results in task order. What Dask adds is where the
tasks run and what happens when a worker dies: the scheduler reruns the task elsewhere, and since
every task writes its output atomically the output appears exactly once.

Dask is an optional extra (``pip install "dhs-core[dask]"``) and is imported only when a run
starts its first map: validating a spec that names this executor stays fast and works without
Dask installed; building the executor without it is a clear error.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Literal

from pydantic import Field, model_validator

from dhs_core.components import ComponentConfig
from dhs_core.errors import StageError, UserError
from dhs_core.executors import Executor, task_done

INSTALL_HINT = 'pip install "dhs-core[dask]"'
#: LocalCluster shape when the spec gives no ``address``, ``workers`` or ``jobqueue``
DEFAULT_WORKERS, DEFAULT_THREADS = 2, 1


class JobqueueConfig(ComponentConfig):
    # batch system the workers are submitted to (dask_jobqueue SLURMCluster or PBSCluster)
    kind: Literal["slurm", "pbs"]
    # cores per job; each job runs cores // torch_threads single-threaded worker processes
    cores: int = Field(ge=1)
    # memory per job, as the batch system spells it ("16GB")
    memory: str = Field(min_length=1)
    # wall-clock limit per job ("HH:MM:SS")
    walltime: str = "01:00:00"
    # partition (SLURM) or queue (PBS); the site default when absent
    queue: str | None = None
    # account / project charged for the jobs; the site default when absent
    account: str | None = None
    # how many jobs to submit
    jobs: int = Field(1, ge=1)
    # further batch directives, verbatim after "#SBATCH" / "#PBS" (e.g. "--gres=gpu:1", "--constraint=cpu")
    extra_directives: list[str] = []
    # shell lines run in each job before the workers start (e.g. "module load cuda", "source env/bin/activate")
    prologue: list[str] = []
    # network interface the workers and scheduler talk over (e.g. "ib0"); the default route when absent
    interface: str | None = None


class DaskConfig(ComponentConfig):
    # an existing scheduler ("tcp://host:8786"); excludes workers/threads_per_worker/jobqueue
    address: str | None = None
    # worker processes of a LocalCluster on this machine (default 2 when nothing else is given)
    workers: int | None = Field(None, ge=1)
    # threads per LocalCluster worker (default 1: tasks are CPU-bound Python and torch)
    threads_per_worker: int | None = Field(None, ge=1)
    # workers submitted as batch jobs through dask-jobqueue: { kind, cores, memory, walltime, queue, account, jobs }
    jobqueue: JobqueueConfig | None = None
    # seconds to wait for the scheduler before failing with the address in the message
    connect_timeout: float = Field(30.0, gt=0)
    # torch/OpenMP threads in each worker process
    torch_threads: int = Field(1, ge=1)
    # reruns of a task that raised or whose worker died, before the stage fails
    retries: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _one_cluster(self) -> DaskConfig:
        local = [f for f in ("workers", "threads_per_worker") if getattr(self, f) is not None]
        given = [n for n, on in (("address", self.address is not None), ("jobqueue", self.jobqueue is not None),
                                 (" / ".join(local), bool(local))) if on]
        if len(given) > 1:
            raise ValueError(f"give one of address, workers/threads_per_worker or jobqueue, not {' and '.join(given)}")
        return self

    @property
    def local_shape(self) -> tuple[int, int] | None:
        """(workers, threads per worker) of the LocalCluster this config starts, or None."""
        if self.address is not None or self.jobqueue is not None:
            return None
        return self.workers or DEFAULT_WORKERS, self.threads_per_worker or DEFAULT_THREADS


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(f"executor 'dask' needs the Python package {module!r}, which is not installed: {INSTALL_HINT}")


class DaskExecutor(Executor):
    """Runs tasks as Dask futures; the client and cluster start on the first map and end at close."""

    Config = DaskConfig

    def __init__(self, config: DaskConfig | None = None) -> None:
        super().__init__()
        self.config = config or DaskConfig()
        _require("distributed")
        if self.config.jobqueue is not None:
            _require("dask_jobqueue")
        self._client: Any = None
        self._cluster: Any = None

    # --- cluster life cycle -----------------------------------------------------------------

    def _where(self) -> str:
        if self.config.address is not None:
            return f"scheduler {self.config.address}"
        if self.config.jobqueue is not None:
            jq = self.config.jobqueue
            return f"{jq.kind} cluster ({jq.jobs} jobs of {jq.cores} cores)"
        w, t = self.config.local_shape or (0, 0)
        return f"local cluster ({w} workers x {t} threads)"

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        import dask
        from distributed import Client

        from dhs_core._dask_worker import ThreadLimit

        cfg = self.config
        # A worker that dies mid-task (killed, out of memory) is not an exception the task raised:
        # the scheduler reschedules it elsewhere up to "allowed-failures" times. It reads that
        # setting when it starts, so it follows `retries` for the schedulers started here; an
        # existing scheduler keeps its own.
        with dask.config.set({"distributed.scheduler.allowed-failures": cfg.retries}):
            if cfg.address is not None:
                try:
                    self._client = Client(cfg.address, timeout=cfg.connect_timeout)
                except (OSError, TimeoutError) as exc:
                    raise StageError(
                        f"executor 'dask': cannot reach the Dask scheduler at {cfg.address} within "
                        f"{cfg.connect_timeout:g} s ({type(exc).__name__}: {exc}); is it running, and is "
                        "executor.address right?"
                    ) from None
            else:
                self._cluster = self._start_cluster()
                self._client = Client(self._cluster, timeout=cfg.connect_timeout)
        # before any task: OMP_NUM_THREADS is read when torch is first imported in the worker
        self._client.register_plugin(ThreadLimit(cfg.torch_threads))
        self.log(f"dask: {self._where()}, dashboard {self._dashboard()}")
        return self._client

    def _start_cluster(self) -> Any:
        cfg = self.config
        if cfg.jobqueue is not None:
            cluster = self.jobqueue_cluster()
            cluster.scale(jobs=cfg.jobqueue.jobs)
            return cluster
        from distributed import LocalCluster

        workers, threads = cfg.local_shape or (DEFAULT_WORKERS, DEFAULT_THREADS)
        # processes, not threads: tasks hold the GIL for most of their time (numpy glue, torch
        # ops on small tensors). Port 0 for the dashboard: two runs on one machine never collide.
        return LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR)

    def jobqueue_cluster(self) -> Any:
        """The dask-jobqueue cluster of ``jobqueue``, before any job is submitted.

        Each job books ``cores`` cores and runs ``cores // torch_threads`` worker processes of one
        Dask thread each, every one with ``torch_threads`` torch threads: the job's cores are
        used once, never oversubscribed (dask-jobqueue alone would give each process
        ``cores // processes`` Dask threads, each running a task with its own torch threads).
        ``cluster.job_script()`` shows the batch script the jobs will run.
        """
        import dask_jobqueue

        jq = self.config.jobqueue
        if jq is None:
            raise UserError("executor 'dask': jobqueue_cluster() needs an executor.jobqueue table")
        processes = self._processes_per_job()
        common = dict(cores=processes, processes=processes, memory=jq.memory, walltime=jq.walltime,
                      queue=jq.queue, account=jq.account, interface=jq.interface,
                      job_extra_directives=list(jq.extra_directives), job_script_prologue=list(jq.prologue))
        if jq.kind == "slurm":
            return dask_jobqueue.SLURMCluster(job_cpu=jq.cores, **common)
        return dask_jobqueue.PBSCluster(resource_spec=f"select=1:ncpus={jq.cores}:mem={jq.memory}", **common)

    def _processes_per_job(self) -> int:
        assert self.config.jobqueue is not None
        return max(1, self.config.jobqueue.cores // self.config.torch_threads)

    def _dashboard(self) -> str:
        # a scheduler started here serves its dashboard from this process: without bokeh the
        # link would open a "Dask needs bokeh" page (the service is listed all the same)
        if self.config.address is None and importlib.util.find_spec("bokeh") is None:
            return "off (install bokeh to get one)"
        try:
            if "dashboard" not in self._client.scheduler_info().get("services", {}):
                return "off (install bokeh to get one)"
            return str(self._client.dashboard_link)
        except Exception:  # the link is a convenience: never fail a run over it
            return "unknown"

    def close(self) -> None:
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is None and cluster is None:
            return
        # A LocalCluster silences distributed's logging only until it closes: its shutdown
        # would print a dozen INFO lines into the run's console. Quiet them for the shutdown.
        dist_log = logging.getLogger("distributed")
        level = dist_log.level
        dist_log.setLevel(logging.ERROR)
        try:
            # called from the runner's finally: a failure to shut down must not hide the run's error
            for part in (client, cluster):
                if part is not None:
                    try:
                        part.close()
                    except Exception:
                        pass
        finally:
            dist_log.setLevel(level)

    @property
    def parallelism(self) -> int:
        shape = self.config.local_shape
        if shape is not None:
            return shape[0] * shape[1]
        if self.config.jobqueue is not None:
            return self.config.jobqueue.jobs * self._processes_per_job()
        workers = self._connect().scheduler_info().get("workers", {})
        return max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    # --- the map ----------------------------------------------------------------------------

    def map(self, fn, tasks, *, progress=None, desc=""):  # type: ignore[override]
        tasks = list(tasks)
        results: list[Any] = [None] * len(tasks)
        todo = [i for i, t in enumerate(tasks) if not task_done(t)]
        self.last_stats = {"run": len(todo), "skipped": len(tasks) - len(todo)}
        if not todo:
            return results  # nothing to run: do not start a cluster for it
        client = self._connect()
        from distributed import as_completed

        bar = progress.task(desc or "tasks", total=len(tasks)) if progress is not None else None
        if bar is not None:
            bar.advance(len(tasks) - len(todo))
        # pure=False: two equal tasks are still two tasks (each writes its own output), never
        # deduplicated by Dask's content hashing
        futures = {client.submit(fn, tasks[i], pure=False, retries=self.config.retries): i for i in todo}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if bar is not None:
                    bar.advance()
        except BaseException:
            # a task failed for good or the run was interrupted: drop what is still queued
            client.cancel(list(futures))
            raise
        finally:
            if bar is not None:
                bar.close()
        return results
