"""Hook implementations of dhs-inject: this module only wires hooks.

Implementations are registered as ``"module:attr"`` strings and imported on first use; the
Configs come from torch-free modules, so listing plugins or validating a spec imports no torch,
scipy or matplotlib.
"""

from __future__ import annotations

from dhs_core import hookimpl


@hookimpl
def register_data_sources(register):
    from dhs_inject.synthetic.config import SyntheticConfig

    register("synthetic", "dhs_inject.synthetic.source:synthetic_source", config=SyntheticConfig,
             summary="Render the DR10-like synthetic survey into ``out_dir`` (manifest, store, truth).")
    from dhs_inject.injected.config import InjectedConfig

    register("injected", "dhs_inject.injected.source:injected_source", config=InjectedConfig,
             summary="A training set of arcs injected into hosts over a grid of configurations, with controls.")


@hookimpl
def register_commands(app):
    from dhs_inject.synthetic.gallery import register_show_command

    register_show_command(app)


@hookimpl
def register_injectors(register):
    from dhs_inject.injectors.configs import Model1Config, Model2Config, Model3Config

    register("model1", "dhs_inject.injectors.model1:model1", config=Model1Config,
             summary="SIE + shear lensing of Sersic (+ clumps) sources into any host, lens shape from the prior.")
    register("model2", "dhs_inject.injectors.model2:model2", config=Model2Config,
             summary="Lens q and PA traced by the host's r-band light; LRG-like (DEV/SER) hosts only "
                     "unless lrg_only = false.")
    register("model3", "dhs_inject.injectors.model3:model3", config=Model3Config,
             summary="Real source morphology: lensed HDF/HUDF galaxy stamps, or re-injected real arc residuals.")


@hookimpl
def register_evaluators(register):
    from dhs_inject.diagnostics.configs import (
        ArcMorphologyConfig,
        BetaFracCeilingConfig,
        FeatureSpaceConfig,
        HostConditioningConfig,
        PreprocessingMismatchConfig,
    )

    diag = "dhs_inject.diagnostics"
    register("feature_space", f"{diag}.feature_space:FeatureSpaceEvaluator", config=FeatureSpaceConfig,
             summary="Probe AUC and Fréchet distance between real lenses, injections and non-lenses per layer.")
    register("arc_morphology", f"{diag}.arc_morphology:ArcMorphologyEvaluator", config=ArcMorphologyConfig,
             summary="KS tests of arc-morphology statistics between real lens residuals and injected arcs.")
    register("beta_frac_ceiling", f"{diag}.beta_frac_ceiling:BetaFracCeilingEvaluator", config=BetaFracCeilingConfig,
             summary="Completeness per source magnitude, beta_frac restricted vs unrestricted (test Q2.1): "
                     "is the missing completeness geometric or morphological?")
    register("host_conditioning", f"{diag}.host_conditioning:HostConditioningEvaluator",
             config=HostConditioningConfig,
             summary="4-way test: LRG vs all hosts x lens shape from the host light (model 2) vs the prior "
                     "(model 1), completeness per theta_E with Fisher tests against model 1.")
    register("preprocessing_mismatch", f"{diag}.preprocessing_mismatch:PreprocessingMismatchEvaluator",
             config=PreprocessingMismatchConfig,
             summary="Held-out cutouts scored with the training and a mismatched preprocessing (test Q2.4): "
                     "paired ΔAUC (DeLong), Δrecall and FPR at p > 0.3 / 0.5 / 0.7.")


@hookimpl
def register_stages(register):
    from dhs_inject.selection.stage import SelectionFunctionStage

    register("selection_function", SelectionFunctionStage())
