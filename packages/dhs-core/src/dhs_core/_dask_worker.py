"""Worker-side setup of the ``dask`` executor (imports distributed: load only from a Dask run)."""

from __future__ import annotations

import os
import sys

from distributed import WorkerPlugin

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ThreadLimit(WorkerPlugin):
    """Gives each worker process ``threads`` intra-op threads, as ``_limit_threads`` does for ``local``.

    N single-threaded workers on N cores is the shape that scales; torch's default of one thread
    per core in every worker oversubscribes the machine and runs slower than one worker. The
    nanny already exports OMP_NUM_THREADS=1 before the worker starts; this sets the configured
    value for libraries imported later, and tells an already imported torch directly.
    """

    name = "dhs-thread-limit"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker) -> None:  # noqa: ANN001 - distributed's Worker
        for var in THREAD_VARIABLES:
            os.environ[var] = str(self.threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.threads)
