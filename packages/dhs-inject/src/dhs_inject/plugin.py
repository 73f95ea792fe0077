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
