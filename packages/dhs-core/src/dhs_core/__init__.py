"""Dark Halo Scope core: plugins, run specs, pipeline runner and provenance."""

from dhs_core.__about__ import __version__
from dhs_core.components import Component, ComponentConfig, EmptyConfig
from dhs_core.errors import (
    DataIntegrityError,
    DhsError,
    InterruptedRun,
    PluginError,
    RequirementError,
    SpecError,
    StageError,
    UserError,
)
from dhs_core.hookspecs import hookimpl
from dhs_core.runner import Run, RunResult, run
from dhs_core.spec import Slot
from dhs_core.stages import Section, Stage, StageContext, artifact

__all__ = [
    "Component", "ComponentConfig", "DataIntegrityError", "DhsError", "EmptyConfig", "InterruptedRun", "PluginError", "RequirementError",
    "Run", "RunResult", "Section", "Slot", "SpecError", "Stage", "StageContext", "StageError",
    "UserError", "__version__", "artifact", "hookimpl", "run",
]
