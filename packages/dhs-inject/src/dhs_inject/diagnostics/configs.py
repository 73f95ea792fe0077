"""Configs of the injection-based diagnostics evaluators (torch-free, so registering them imports
no torch, scikit-learn or matplotlib)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from dhs_core import ComponentConfig, Slot


class FeatureSpaceConfig(ComponentConfig):
    """Options of the ``feature_space`` evaluator."""

    # injection model whose arcs are compared with real lenses (a registered injector, by name)
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # cutouts per group (real lenses, non-lenses, injections); fewer if the splits hold fewer
    n_per_group: int = Field(200, ge=1)
    # held-out splits the groups are drawn from
    splits: tuple[str, ...] = ("test", "val")
    # module names to embed (model.named_modules()); None = the end of every backbone stage
    layers: tuple[str, ...] | None = None
    # cross-validation folds of the linear probe
    n_folds: int = Field(5, ge=2)
    # decision threshold on the sigmoid score for the recall comparison
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # cutouts per forward pass
    batch_size: int = Field(64, ge=1)
    # write feature_space_probe_auc.png
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
