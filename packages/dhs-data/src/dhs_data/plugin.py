"""Hook implementations of dhs-data: this module only wires hooks."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_data_sources(register):
    from dhs_data.sources.legacysurvey import LegacySurveyConfig, legacysurvey_source
    from dhs_data.sources.manifest_source import ManifestSourceConfig, manifest_source

    register("manifest", manifest_source, config=ManifestSourceConfig)
    register("legacysurvey", legacysurvey_source, config=LegacySurveyConfig)


@hookimpl
def register_preprocessors(register):
    from dhs_data.preprocess import CenterCropConfig, RawRobustConfig, build_center_crop, build_raw_robust

    register("raw_robust", build_raw_robust, config=RawRobustConfig)
    register("center_crop", build_center_crop, config=CenterCropConfig)


@hookimpl
def register_stages(register):
    from dhs_data.stage import DataStage

    register("data", DataStage())


@hookimpl
def register_commands(app):
    from dhs_data.cli import register

    register(app)
