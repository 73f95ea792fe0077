"""Hook implementations of dhs-data: this module only wires hooks."""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_data_sources(register):
    from dhs_data.sources.legacysurvey import LegacySurveyConfig
    from dhs_data.sources.manifest_source import ManifestSourceConfig

    register("manifest", "dhs_data.sources.manifest_source:manifest_source", config=ManifestSourceConfig,
             summary="An existing parquet manifest with npz, fits or shard cutouts.")
    register("legacysurvey", "dhs_data.sources.legacysurvey:legacysurvey_source", config=LegacySurveyConfig,
             summary="LRG parent sample from Tractor sweeps with N1 and N2 negative pools.")


@hookimpl
def register_preprocessors(register):
    from dhs_data.preprocess.center_crop import CenterCropConfig
    from dhs_data.preprocess.raw_robust import RawRobustConfig

    register("raw_robust", "dhs_data.preprocess.raw_robust:build_raw_robust", config=RawRobustConfig,
             summary="Per-band (x - median) / (1.4826 MAD) from a sky annulus, clipped.")
    register("center_crop", "dhs_data.preprocess.center_crop:build_center_crop", config=CenterCropConfig,
             summary="Central square crop (101 -> 64 px by default).")
    from dhs_data.preprocess.chain import ChainConfig

    register("chain", "dhs_data.preprocess.chain:build_chain", config=ChainConfig,
             summary="Preprocessors applied in order ([[preprocess]] as a list of tables).")


@hookimpl
def register_stages(register):
    from dhs_data.stage import DataStage

    register("data", DataStage())


@hookimpl
def register_commands(app):
    from dhs_data.cli import register

    register(app)
