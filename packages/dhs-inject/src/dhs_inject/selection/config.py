"""The ``[selection_function]`` spec section: grid axes, injector, threshold and host choice."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from dhs_core import ComponentConfig, Slot

#: default detection operating point: ~1 false positive per 1000 non-lenses, as a survey search runs
DEFAULT_TARGET_FPR = 1e-3


class ThetaEGrid(ComponentConfig):
    """Einstein radii injected: start, start + step, ... up to and including stop (arcsec)."""

    # smallest Einstein radius injected, arcsec
    start: float = Field(0.5, gt=0)
    # largest Einstein radius injected (included when on the step lattice), arcsec
    stop: float = Field(3.0, gt=0)
    # spacing of the grid, arcsec
    step: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ThetaEGrid:
        if self.stop < self.start:
            raise ValueError(f"theta_e stop = {self.stop} is below start = {self.start}; give start <= stop (arcsec)")
        if (self.stop - self.start) / self.step > 1000:
            raise ValueError(f"theta_e grid start={self.start}, stop={self.stop}, step={self.step} has more than "
                             "1000 values; use a coarser step")
        return self

    def values(self) -> list[float]:
        """The grid values, rounded to 1e-9 arcsec so 0.1-type steps do not drift."""
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        return [round(self.start + i * self.step, 9) for i in range(n)]


def _check_edges(value: list[float] | None, what: str) -> list[float] | None:
    if value is None:
        return None
    if len(value) < 2:
        raise ValueError(f"{what} needs at least two edges (one bin); got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{what} edges must be finite numbers; got {value!r}")
    if any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError(f"{what} edges must increase strictly (empty bins are not allowed); got {value!r}")
    return value


class SelectionFunctionConfig(ComponentConfig):
    """Injection-recovery grid: theta_E x PSF bin x depth bin x source magnitude bin.

    Hosts are binned by their own observing conditions (``psfsize_r``, ``psfdepth_r`` from the
    manifest); arcs are convolved with the host's PSF, never re-blurred to a bin value. Exactly
    one of ``target_fpr`` / ``threshold`` decides detection (``score >= threshold``); with
    neither, ``target_fpr`` = 1e-3.
    """

    # injection model (a registered injector, selected by name); its prior's theta_e and
    # src_r_mag ranges are replaced per cell by the grid value and the magnitude bin
    injector: Annotated[Any, Slot("injector")] = {"name": "model1"}
    # Einstein radii injected (each cell injects exactly one value), arcsec
    theta_e: ThetaEGrid = ThetaEGrid()
    # edges of the host r-band PSF FWHM bins, arcsec; None = one bin holding every host
    psfsize_r_edges: list[float] | None = None
    # edges of the host r-band psfdepth bins (inverse variance, 1/nanomaggy^2; 5-sigma depth
    # m5 = 22.5 - 2.5 log10(5/sqrt(psfdepth))); None = one bin holding every host
    psfdepth_r_edges: list[float] | None = None
    # edges of the unlensed source r-band AB magnitude bins; magnitudes are drawn uniformly inside
    source_mag_edges: list[float] = [23.0, 24.0, 25.0, 26.0]
    # injections requested per cell (failed attempts are retried on new hosts by the injector)
    per_cell: int = Field(200, ge=1, le=1_000_000)
    # split whose non-lens cutouts (label 0) serve as hosts; test keeps them unseen by training
    host_split: str = "test"
    # pools the hosts come from (e.g. ["N1"] for ordinary galaxies only); None = every non-lens
    host_pools: list[str] | None = None
    # false-positive rate on the validly scored negatives of threshold_split fixing the threshold
    target_fpr: float | None = Field(None, gt=0, lt=1)
    # fixed score threshold instead of target_fpr (sigmoid probability)
    threshold: float | None = Field(None, ge=0, le=1)
    # split of train/scores.parquet whose negatives set the target-FPR threshold
    threshold_split: Literal["val", "test"] = "val"
    # injections rendered and scored per batch (memory ~ a few x batch_size x 3 x H x W floats)
    batch_size: int = Field(128, ge=1, le=100_000)
    # write completeness PNGs (vs theta_E per magnitude bin; theta_E x PSF heatmap)
    plots: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_threshold_rule(cls, data: Any) -> Any:
        if isinstance(data, dict):
            has_fpr, has_thr = data.get("target_fpr") is not None, data.get("threshold") is not None
            if has_fpr and has_thr:
                raise ValueError("give either target_fpr (threshold from the negatives) or threshold (fixed), not both")
            if not has_fpr and not has_thr:
                data = {**data, "target_fpr": DEFAULT_TARGET_FPR}
        return data

    @field_validator("psfsize_r_edges")
    @classmethod
    def _psf_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "psfsize_r_edges")
        if v is not None and v[0] < 0:
            raise ValueError(f"psfsize_r_edges are PSF FWHM in arcsec and cannot be negative; got {v!r}")
        return v

    @field_validator("psfdepth_r_edges")
    @classmethod
    def _depth_edges(cls, v: list[float] | None) -> list[float] | None:
        v = _check_edges(v, "psfdepth_r_edges")
        if v is not None and v[0] < 0:
            raise ValueError(f"psfdepth_r_edges are inverse variances (1/nanomaggy^2) and cannot be negative; got {v!r}")
        return v

    @field_validator("source_mag_edges")
    @classmethod
    def _mag_edges(cls, v: list[float]) -> list[float]:
        return _check_edges(v, "source_mag_edges")

    @field_validator("host_pools")
    @classmethod
    def _pools(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("host_pools is empty, which selects no host; give e.g. [\"N1\"] or leave it out")
        return v
