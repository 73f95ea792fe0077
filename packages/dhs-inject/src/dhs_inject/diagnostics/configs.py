"""Configs of the injection-based diagnostics evaluators (torch-free, so registering them imports
no torch, scikit-learn or matplotlib)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from dhs_core import ComponentConfig, Slot


class FeatureSpaceConfig(ComponentConfig):
    """Options of the ``feature_space`` evaluator."""

    # injection model whose arcs are compared with real lenses (a registered injector, by name)
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # cutouts per group (real lenses, Tier-A lenses, non-lenses, each injection group); fewer if the
    # splits hold fewer
    n_per_group: int = Field(200, ge=1)
    # held-out splits the groups are drawn from
    splits: tuple[str, ...] = ("test", "val")
    # module names to embed (model.named_modules()); None = the end of every backbone stage
    layers: tuple[str, ...] | None = None
    # cross-validation folds of the linear probe
    n_folds: int = Field(5, ge=2)
    # decision threshold on the sigmoid score for the recall comparison
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # beta_frac (source offset / theta_E) splitting two extra injection groups, drawn into the same
    # hosts with the injector prior's beta_frac pinned to [prior low, split] and [split, prior high]
    # (published test Q2.2: 0.55); None = no low/high-beta_frac groups
    beta_frac_split: Annotated[float, Field(gt=0.0)] | None = 0.55
    # published realism-gap rule (Q2.2), at the penultimate layer: FD(Tier-A, injections) /
    # FD(Tier-A, non-lenses) above this ...
    frechet_ratio_rule: float = Field(2.0, gt=0.0)
    # ... or a linear-probe AUC of injections vs Tier-A lenses above this => a realism gap
    probe_auc_rule: float = Field(0.85, gt=0.5, lt=1.0)
    # 2-D map of the penultimate layer (feature_space_embedding.png): "umap" (needs umap-learn),
    # "pca" (standardized features) or "auto" (UMAP when umap-learn imports, otherwise PCA)
    embedding_method: Literal["auto", "umap", "pca"] = "auto"
    # cutouts per forward pass
    batch_size: int = Field(64, ge=1)
    # write feature_space_probe_auc.png and feature_space_embedding.png
    plots: bool = True


class ArcMorphologyConfig(ComponentConfig):
    """Options of the ``arc_morphology`` evaluator."""

    # injection model whose arcs are compared with real lenses (a registered injector, by name)
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # real lenses and injections compared (fewer if the splits hold fewer)
    n_per_group: int = Field(200, ge=1)
    # held-out splits the cutouts are drawn from
    splits: tuple[str, ...] = ("test", "val")
    # median-filter width (odd, px) that removes the lens galaxy from real lenses and injections
    median_size: int = Field(7, ge=3)
    # radial frequency cut (cycles/px) of the high-frequency power fraction
    k_cut: float = Field(0.25, gt=0.0, lt=0.7)
    # Gaussian smoothing (px) before gradients are taken
    smoothing: float = Field(1.0, ge=0.0)
    # half-width (px) of the annulus around the arc radius of the local variance ratio
    half_width: float = Field(3.0, gt=0.0)
    # write arc_morphology_histograms.png
    plots: bool = True


#: plausible unlensed source magnitudes (AB): outside this the edges are almost surely in another unit
SOURCE_MAG_PLAUSIBLE = (10.0, 35.0)
#: plausible Einstein radii (arcsec) of galaxy- and group-scale lenses
THETA_E_PLAUSIBLE_MAX = 10.0


def _check_thresholds(value: tuple[float, ...]) -> tuple[float, ...]:
    if not value:
        raise ValueError("thresholds needs at least one score threshold, e.g. [0.3, 0.5]")
    bad = [t for t in value if not (math.isfinite(t) and 0 < t < 1)]
    if bad:
        raise ValueError(f"thresholds = {list(value)}: score thresholds are probabilities in (0, 1); got {bad}")
    if len(set(value)) != len(value):
        raise ValueError(f"thresholds = {list(value)} repeats a value")
    return value


class BetaFracCeilingConfig(ComponentConfig):
    """Options of the ``beta_frac_ceiling`` evaluator (the published test Q2.1)."""

    # injection model (a registered injector with a prior); its prior's src_r_mag is set per bin and
    # its beta_frac per set, theta_E and everything else are drawn from its prior
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # edges of the unlensed source r-band magnitude bins, AB mag (published: 18, 19, ..., 26)
    source_mag_edges: tuple[float, ...] = (18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0)
    # injections requested per magnitude bin and set (published: 125 x 8 bins = 1,000 per set)
    n_per_bin: int = Field(125, ge=1, le=100_000)
    # beta_frac range (source offset / theta_E) of the restricted set: arcs near the Einstein ring
    beta_frac_restricted: tuple[float, float] = (0.1, 0.55)
    # beta_frac range of the unrestricted set (the default prior's)
    beta_frac_unrestricted: tuple[float, float] = (0.1, 1.0)
    # detection thresholds on the sigmoid score (detected: score > t); the first sets the ceiling
    thresholds: tuple[float, ...] = (0.3, 0.5)
    # published rule: a restricted-set ceiling >= this means the missing completeness is geometric
    ceiling_rule: float = Field(0.4, gt=0.0, lt=1.0)
    # held-out splits the host non-lenses are drawn from
    splits: tuple[str, ...] = ("test", "val")
    # injections rendered and scored together
    batch_size: int = Field(64, ge=1)
    # write beta_frac_ceiling.png
    plots: bool = True

    @field_validator("source_mag_edges")
    @classmethod
    def _magnitudes(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) < 2:
            raise ValueError(f"source_mag_edges = {list(value)}: needs at least two edges (one bin)")
        if not all(math.isfinite(v) for v in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"source_mag_edges = {list(value)}: edges must be finite and strictly increasing")
        lo, hi = SOURCE_MAG_PLAUSIBLE
        if value[0] < lo or value[-1] > hi:
            raise ValueError(f"source_mag_edges = {list(value)}: AB magnitudes expected (unlensed source r, "
                             f"within [{lo:g}, {hi:g}]; the published bins are 18, 19, ..., 26)")
        return value

    @field_validator("beta_frac_restricted", "beta_frac_unrestricted")
    @classmethod
    def _beta_range(cls, value: tuple[float, float], info) -> tuple[float, float]:
        lo, hi = value
        if not (0.0 <= lo <= hi <= 1.0):
            raise ValueError(f"{info.field_name} = {list(value)}: a beta_frac range [lo, hi] (source offset / "
                             "theta_E) needs 0 <= lo <= hi <= 1")
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return _check_thresholds(value)


class HostConditioningConfig(ComponentConfig):
    """Options of the ``host_conditioning`` evaluator (the published 4-way test, model 2 vs model 1)."""

    # injector whose lens q and PA are drawn from its prior, independent of the host (model 1)
    independent: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # injector whose lens q and PA follow the host's light; needs an ``lrg_only`` option, set to
    # false for the all-hosts arm (model 2)
    conditioned: Annotated[Any, Slot("injector")] = {"name": "model2"}
    # Einstein radii injected, arcsec (published: 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
    theta_e: tuple[float, ...] = (0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
    # injections requested per theta_E point and arm (published: 500)
    n_per_point: int = Field(500, ge=1, le=100_000)
    # detection threshold on the sigmoid score (detected: score > t; published: C(p > 0.5))
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # held-out splits the host non-lenses are drawn from
    splits: tuple[str, ...] = ("test", "val")
    # injections rendered and scored together
    batch_size: int = Field(64, ge=1)
    # write host_conditioning.png
    plots: bool = True

    @field_validator("theta_e")
    @classmethod
    def _einstein_radii(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("theta_e needs at least one Einstein radius (arcsec)")
        if any(not (math.isfinite(t) and 0 < t <= THETA_E_PLAUSIBLE_MAX) for t in value):
            raise ValueError(f"theta_e = {list(value)}: Einstein radii in arcsec, each in (0, "
                             f"{THETA_E_PLAUSIBLE_MAX:g}] (were they given in pixels of 0.262\"?)")
        if len(set(value)) != len(value):
            raise ValueError(f"theta_e = {list(value)} repeats a value")
        return value


class PreprocessingMismatchConfig(ComponentConfig):
    """Options of the ``preprocessing_mismatch`` evaluator (the published test Q2.4)."""

    # the mismatched preprocessing the held-out cutouts are also scored with (a registered
    # preprocessor, by name); it must differ from the checkpoint's. Published Q2.4: a model trained
    # with raw_robust annulus [20, 32] scored with [32.5, 45] (which fits 101-px stamps only)
    preprocess: Annotated[Any, Slot("preprocessor")] = {"name": "raw_robust", "annulus": [32.5, 45.0]}
    # held-out splits whose labelled cutouts are scored
    splits: tuple[str, ...] = ("test",)
    # at most this many lenses and this many non-lenses (a seeded draw per class); None = every
    # held-out cutout (published Q2.4: 500 of each)
    n_max: int | None = Field(None, ge=1)
    # detection thresholds on the sigmoid score (detected: score > t; published: 0.3, 0.5, 0.7)
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    # published rule: an AUC drop under the mismatched preprocessing larger than this means the
    # preprocessing choice matters (GO for a retrain with the intended annulus)
    auc_drop_rule: float = Field(0.002, gt=0.0, lt=1.0)
    # cutouts per forward pass (both scorings use the same batches)
    batch_size: int = Field(64, ge=1)
    # write preprocessing_mismatch.png
    plots: bool = True

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return _check_thresholds(value)

