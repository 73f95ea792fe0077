"""Configs of the injection models (torch-free, so registering the injectors imports no torch).

Every injector built on :class:`~dhs_inject.injectors.base.BaseInjector` accepts the options of
:class:`InjectorConfig`; the selection function pins its ``prior`` per grid cell.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from dhs_core import ComponentConfig
from dhs_inject.priors import PriorConfig


class Perturbation(ComponentConfig):
    """A controlled change of the injected population, for sensitivity analysis.

    Applied after the parameters are drawn, so the same random draws (hosts, positions, every
    other parameter, noise) are kept and only the perturbed quantity changes (common random
    numbers): the identity perturbation renders byte-identical injections. The injection record
    keeps the drawn (unperturbed) parameters; the variant records what was changed.
    """

    # arcs rendered with the host's PSF FWHM times this (the host image itself is unchanged)
    psf_fwhm_scale: float = Field(1.0, gt=0, le=3)
    # source half-light radii, and with them the clump offsets and sizes, times this
    src_r_e_scale: float = Field(1.0, gt=0, le=10)
    # added to the source g - r colour (mag; the r flux is unchanged)
    src_g_r_shift: float = Field(0.0, ge=-2, le=2)
    # added to the unlensed source r magnitude (negative: brighter; every band alike)
    src_r_mag_shift: float = Field(0.0, ge=-5, le=5)
    # lens axis-ratio range replacing the prior's: each drawn q keeps its quantile in the range
    lens_q: tuple[float, float] | None = None

    @field_validator("lens_q")
    @classmethod
    def _q_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0 < v[0] <= v[1] <= 1):
            raise ValueError(f"lens_q = {list(v)}: an axis-ratio range [lo, hi] needs 0 < lo <= hi <= 1")
        return v

    def is_identity(self) -> bool:
        return (self.psf_fwhm_scale == 1.0 and self.src_r_e_scale == 1.0 and self.src_g_r_shift == 0.0
                and self.src_r_mag_shift == 0.0 and self.lens_q is None)


class InjectorConfig(ComponentConfig):
    """Options common to every injection model."""

    prior: PriorConfig = PriorConfig()  # parameter priors
    # sensitivity perturbation applied to the drawn parameters (the selection function's
    # [[selection_function.sensitivity]] entries set it; default: none)
    perturb: Perturbation = Perturbation()
    pixel_scale: float = Field(0.262, gt=0)  # arcsec per pixel of the cutouts
    # sub-pixels per pixel side for ray shooting: "adaptive" (refined where the profile needs it,
    # up to max_supersample, to the tolerance of docs/inject.md) or a fixed integer >= 1
    supersample: Literal["adaptive"] | Annotated[int, Field(ge=1)] = "adaptive"
    max_supersample: Literal[3, 9, 27, 81, 243, 729, 2187] = 729  # finest adaptive level (sub-pixels per pixel side)
    tolerance: float = Field(0.01, gt=0, lt=1)  # adaptive target: total flux and pixels (/ peak) within this
    # "subpixel": the PSF acts on the light at its sub-pixel position, integrated over the output
    # pixel; "pixel": the sub-pixel mean is convolved on the pixel grid (lenstronomy's default,
    # 4.4 % of the peak off at worst on the benchmark's 16 draws, docs/inject.md)
    psf_convolution: Literal["subpixel", "pixel"] = "subpixel"
    psf: Literal["gaussian", "moffat"] = "gaussian"  # PSF model (FWHM from psfsize_r x band_scale)
    moffat_beta: float = Field(3.5, gt=1)  # Moffat beta when psf = "moffat"
    band_scale: tuple[float, float, float] = (1.05, 1.00, 0.94)  # g, r, z FWHM / r FWHM
    noise: Literal["ring", "psfdepth"] = "ring"  # sky sigma for arc SNR: host outer-ring MAD or psfdepth
    arc_poisson_gain: float | None = None  # electrons per nanomaggy; None = no arc Poisson noise
    max_retries: int = Field(5, ge=0)  # new hosts tried after a failed injection
    dtype: Literal["float32", "float64"] = "float32"  # working precision
    # where the arcs are rendered: "cpu" (default: results independent of the machine), "cuda"
    # (the whole batch on the GPU; refused where torch sees no CUDA device) or "auto" (CUDA when
    # present). Host cutouts and results stay numpy; only the render moves.
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # Sersic (+ clump) sources always go through the fused ray-shooting kernel of dhs_inject.render;
    # True runs it compiled by torch.compile (compiled on first use in a process; if that fails, a
    # warning gives the reason once and it runs eagerly), False runs it eagerly (same maths, no
    # compile time, several times slower per injection). Pixel-stamp sources (model3) are
    # rendered by the generic path whatever this says.
    fast_kernel: bool = True


class Model1Config(InjectorConfig):
    """Model 1 uses only the common injector options."""


class Model2Config(InjectorConfig):
    """Model 2 options."""

    min_lens_q: float = 0.3  # floor of the light-traced lens axis ratio
    # True: LRG-like (DEV/SER) hosts only, others fail as host_not_lrg; False: trace q and PA from
    # any host's light (the "all hosts + conditioned" arm of the host_conditioning diagnostic)
    lrg_only: bool = True

    @model_validator(mode="after")
    def _no_prior_q_perturbation(self) -> Model2Config:
        if self.perturb.lens_q is not None:
            raise ValueError("perturb.lens_q changes the prior's lens axis-ratio range, but model2 takes the lens q "
                             "from the host's light; use model1 for a lens-q sensitivity variant")
        return self


class Model3Config(InjectorConfig):
    """Model 3 options (the common injector options plus the source-stamp library)."""

    stamp_dir: str | None = None  # directory of FITS source stamps (e.g. HUDF cut-outs); None = HDF galaxies
    stamp_pixel_scale: float = Field(0.03, gt=0)  # arcsec/pixel of the FITS stamps (HUDF ACS: 0.03)
    source_size: Literal["prior", "native"] = "prior"  # "prior": half-light radius = drawn src_r_e
    hdf_min_area: int = Field(40, ge=4)  # HDF segmentation: minimum segment area, HDF pixels
    hdf_min_snr: float = Field(20.0, gt=0)  # HDF segmentation: minimum segment SNR
    random_orientation: bool = True  # random rotation by k x 90 degrees and flip of each stamp/arc
    real_arc_residuals: str | None = None  # .npy of (M, 3, H, W) lens cutouts; inject their extracted arcs
    arc_filter_size: int = Field(13, ge=3)  # median-filter box (pixels, odd) for arc extraction
    arc_clip_sigma: float = Field(2.0, ge=0)  # residual pixels below this x robust sigma are zeroed
    arc_core_radius: float = Field(4.0, ge=0)  # residual zeroed within this radius (pixels) of the centre
