"""dhs-core's own plugin: the ``local`` and ``dask`` executors."""

from __future__ import annotations

from dhs_core.dask_executor import DaskConfig
from dhs_core.executors import LocalConfig, LocalExecutor
from dhs_core.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    register("local", LocalExecutor, config=LocalConfig, summary="Process pool on this machine")
    # by reference: Dask (an optional extra) loads only when a run builds this executor
    register("dask", "dhs_core.dask_executor:DaskExecutor", config=DaskConfig,
             summary='Dask workers: a LocalCluster, a scheduler address, or SLURM/PBS (pip install "dhs-core[dask]")')
