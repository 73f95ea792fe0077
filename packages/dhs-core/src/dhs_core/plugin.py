"""dhs-core's own plugin: the ``local`` executor."""

from __future__ import annotations

from dhs_core.executors import LocalConfig, LocalExecutor
from dhs_core.hookspecs import hookimpl


@hookimpl
def register_executors(register):
    register("local", LocalExecutor, config=LocalConfig, summary="Process pool on this machine")
