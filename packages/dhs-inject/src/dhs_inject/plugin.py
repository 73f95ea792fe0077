"""Hook implementations of dhs-inject: this module only wires hooks."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_data_sources(register):
    from dhs_inject.synthetic.config import SyntheticConfig
    from dhs_inject.synthetic.source import synthetic_source

    register("synthetic", synthetic_source, config=SyntheticConfig)


@hookimpl
def register_commands(app):
    from dhs_inject.synthetic.gallery import register_show_command

    register_show_command(app)


@hookimpl
def register_injectors(register):
    from dhs_inject.injectors.model1 import Model1Config, model1
    from dhs_inject.injectors.model2 import Model2Config, model2
    from dhs_inject.injectors.model3 import Model3Config, model3

    register("model1", model1, config=Model1Config)
    register("model2", model2, config=Model2Config)
    register("model3", model3, config=Model3Config)


@hookimpl
def register_stages(register):
    from dhs_inject.selection.stage import SelectionFunctionStage

    register("selection_function", SelectionFunctionStage())
