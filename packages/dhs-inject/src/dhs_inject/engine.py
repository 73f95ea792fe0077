"""The batched injection engine: drawn parameters -> arc images -> injected cutouts.

:func:`simulate_arcs` is pure (parameters in, images out); :func:`inject_arcs` adds the arcs to
host cutouts and measures the per-injection outputs (arc SNR, injected flux, magnification).
Parameter dictionaries hold (N,) arrays named as in :mod:`dhs_inject.priors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dhs_inject import noise, psf
from dhs_inject.adaptive import adaptive_sersic_unit_image, check_max_supersample
from dhs_inject.errors import require
from dhs_inject.lensing import phi_q_to_e1e2
from dhs_inject.render import lensed_unit_image, sersic_unit_image
from dhs_inject.sources import band_fluxes, check_sersic, stamp_surface_brightness

__all__ = ["ArcImages", "InjectionBatch", "inject_arcs", "make_kernels", "simulate_arcs"]


@dataclass
class ArcImages:
    """Noise-free arcs: ``arcs`` (N, 3, H, W) nanomaggies, ``magnification`` (N,) total lensed flux
    in the stamp over the unlensed flux, from the render (before the PSF), ``source_flux`` (N, 3)
    unlensed flux, ``kernels`` (N, 3, K, K) PSFs used, ``refined_fraction`` (N,) fraction of
    pixels the adaptive supersampling refined (0 on the fixed-grid path)."""

    arcs: torch.Tensor
    magnification: torch.Tensor
    source_flux: torch.Tensor
    kernels: torch.Tensor
    refined_fraction: torch.Tensor | None = None


@dataclass
class InjectionBatch:
    """Result of one injector call; arrays are numpy, first axis = successful injections."""

    images: np.ndarray  # (n_ok, 3, H, W) host + arc, float32 nanomaggies
    arcs: np.ndarray  # (n_ok, 3, H, W) arc only (after PSF, plus Poisson noise if enabled)
    magnification: np.ndarray  # (n_ok,) total magnification of the source
    arc_snr: np.ndarray  # (n_ok,) matched-filter SNR of the arc over g, r, z
    injected_flux: np.ndarray  # (n_ok, 3) arc flux per band in the stamp (nanomaggies)
    params: dict[str, np.ndarray]  # every drawn parameter, (n_ok,) each
    host_index: np.ndarray  # (n_ok,) row of the host used in the input hosts array
    n_ok: int = 0
    n_failed: int = 0  # failed attempts (each retried on a new host)
    n_dropped: int = 0  # requested injections that failed on every retry
    failures: dict[str, int] = field(default_factory=dict)  # reason -> failed attempts
    # (n_ok, 3) noise-free rendered arc flux per band in the stamp (after the PSF, before any arc
    # Poisson noise) and (n_ok, 3) unlensed source flux: arc_flux / source_flux is the magnification
    # the image really carries (light the PSF spreads beyond the stamp is not in it)
    arc_flux: np.ndarray | None = None
    source_flux: np.ndarray | None = None


def _t(value: Any, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def make_kernels(psfsize_r: torch.Tensor, *, pixel_scale: float, model: str = "gaussian",
                 moffat_beta: float = 3.5, band_scale=psf.DEFAULT_BAND_SCALE,
                 kernel: np.ndarray | None = None) -> torch.Tensor:
    """(N, 3, K, K) unit-sum PSFs: Gaussian/Moffat per-band FWHM from psfsize_r, or a fixed pixel kernel."""
    if model == "file":
        k = torch.as_tensor(kernel, dtype=psfsize_r.dtype, device=psfsize_r.device)
        k = k.expand(3, *k.shape[-2:]) if k.ndim == 2 else k
        return k.expand(psfsize_r.shape[0], *k.shape)
    fwhm = psf.band_fwhm(psfsize_r, band_scale)
    if model == "moffat":
        return psf.moffat_kernel(fwhm, pixel_scale, beta=moffat_beta)
    return psf.gaussian_kernel(fwhm, pixel_scale)


def validate_parameters(params: dict[str, np.ndarray]) -> None:
    """Refuse unphysical lens/source parameters with a message naming the parameter."""
    theta_e = np.asarray(params["theta_e"])
    require(bool(np.all(theta_e > 0)), f"theta_e must be > 0 arcsec; got min {theta_e.min():.4g}")
    for key in ("lens_q", "src_q"):
        if key in params:
            q = np.asarray(params[key])
            require(bool(np.all((q > 0) & (q <= 1))), f"{key} must be in (0, 1]; got {q.min():.4g}..{q.max():.4g}")
    if "src_n" in params:  # Sersic sources (stamp sources carry src_r_e but no index)
        check_sersic(params["src_r_e"], params["src_n"])


#: the engine's and every injector's default: adaptive supersampling up to MAX_SUPERSAMPLE
ADAPTIVE = "adaptive"
MAX_SUPERSAMPLE = 729
#: target accuracy of the adaptive render (total flux; each PSF-convolved pixel, relative to the peak)
TOLERANCE = 0.01
#: sub-pixel grid of pixel-stamp sources (model3) when ``supersample = "adaptive"``: the
#: adaptive refinement covers the Sersic (+ clump) kernel only
STAMP_SUPERSAMPLE = 9


def simulate_arcs(params: dict[str, np.ndarray], *, n_pix: int, pixel_scale: float = 0.262,
                  supersample: int | str = ADAPTIVE, kernels: torch.Tensor, clumps: np.ndarray | None = None,
                  stamps: np.ndarray | None = None, dtype: torch.dtype = torch.float32,
                  compile: bool = False, psf_convolution: str = "subpixel",
                  max_supersample: int = MAX_SUPERSAMPLE, tolerance: float = TOLERANCE,
                  device: str | torch.device | None = None) -> ArcImages:
    """Render lensed, PSF-convolved arcs for N parameter sets (SIE + shear, Sersic/clumps or stamps).

    ``params`` needs theta_e, lens_e1, lens_e2, lens_x, lens_y, gamma1, gamma2, src_x, src_y,
    src_r_mag, src_g_r, src_r_z and, for Sersic sources, src_r_e, src_n, src_e1, src_e2; for
    stamp sources ``stamps`` (N, h, w) and ``src_stamp_scale`` (arcsec per stamp pixel).
    ``clumps`` (N, K, 4) = (flux fraction, dx, dy, sigma) relative to the source centre.

    ``supersample``: ``"adaptive"`` (default; :mod:`dhs_inject.adaptive`, refined up to
    ``max_supersample`` to ``tolerance``) or a fixed number of sub-pixels per pixel side.
    ``psf_convolution``: ``"subpixel"`` (default: the PSF acts on the light at its sub-pixel
    position and is integrated over the output pixel, :func:`dhs_inject.psf.convolve_subpixel`)
    or ``"pixel"`` (the sub-pixel mean is convolved on the pixel grid, lenstronomy's default).
    ``device``: where the arcs are rendered (default: the device of ``kernels``); every tensor of
    the render is made there, so a CUDA device renders the whole batch on the GPU.
    """
    validate_parameters(params)
    require(psf_convolution in ("pixel", "subpixel"),
            f"psf_convolution must be 'pixel' or 'subpixel'; got {psf_convolution!r}")
    adaptive = supersample == ADAPTIVE
    require(adaptive or (isinstance(supersample, int) and supersample >= 1),
            f"supersample must be 'adaptive' or an integer >= 1; got {supersample!r}")
    if adaptive:
        check_max_supersample(max_supersample)
    subpixel = psf_convolution == "subpixel"
    moments = refined = None
    device = kernels.device if device is None else torch.device(device)
    p = {k: _t(v, dtype, device) for k, v in params.items() if np.asarray(v).dtype.kind in "fiu"}
    lens = dict(theta_e=p["theta_e"], e1=p["lens_e1"], e2=p["lens_e2"], center_x=p["lens_x"],
                center_y=p["lens_y"], gamma1=p["gamma1"], gamma2=p["gamma2"])
    if stamps is not None:
        grid = dict(n_pix=n_pix, pixel_scale=pixel_scale, supersample=STAMP_SUPERSAMPLE if adaptive else supersample)
        scale = p["src_stamp_scale"].reshape(-1, 1, 1)
        stamp_t = _t(stamps, dtype, device)

        def stamp_source(bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
            # evaluate in stamp pixels, then convert per-pixel^2 to per-arcsec^2
            sb = stamp_surface_brightness(bx / scale, by / scale, stamp_t, stamp_scale=1.0,
                                          center_x=p["src_x"] / p["src_stamp_scale"],
                                          center_y=p["src_y"] / p["src_stamp_scale"])
            return sb / scale**2

        unit = lensed_unit_image(lens, stamp_source, **grid, moments=subpixel)
        if subpixel:  # the (N, 6, H, W) layout of psf.convolve_subpixel: flux, then its moments
            unit, moments = unit[0], torch.cat([unit[0][:, None], unit[1]], dim=1)
    else:
        clump_t = None
        smooth = torch.ones_like(p["theta_e"])
        if clumps is not None:
            clump_t = _t(clumps, dtype, device).clone()
            clump_t[..., 1] += p["src_x"][:, None]
            clump_t[..., 2] += p["src_y"][:, None]
            smooth = 1 - clump_t[..., 0].sum(1)
        src = dict(flux=smooth, r_e=p["src_r_e"], n=p["src_n"], e1=p["src_e1"], e2=p["src_e2"],
                   center_x=p["src_x"], center_y=p["src_y"])
        if "src_b_n" in p:  # optional override, e.g. lenstronomy's 1.9992 n - 0.3271
            src["b_n"] = p["src_b_n"]
        grid = dict(n_pix=n_pix, pixel_scale=pixel_scale, compile=compile, moments=subpixel)
        if adaptive:
            image = adaptive_sersic_unit_image(lens, src, clump_t, max_supersample=max_supersample,
                                               tolerance=tolerance, **grid)
            unit, moments = image.unit, image.planes if subpixel else None
            refined = image.refined.flatten(1).to(dtype).mean(1)
        else:
            unit = sersic_unit_image(lens, src, clump_t, supersample=supersample, **grid)
            if subpixel:
                unit, moments = unit[0], unit.transpose(0, 1)
    flux = band_fluxes(p["src_r_mag"], p["src_g_r"], p["src_r_z"])
    magnification = unit.sum(dim=(-2, -1))
    # one morphology per source: the unit image is transformed once and each band's flux is folded
    # into its PSF (convolution is linear), so no extra pass over the band images is needed
    # the Sersic/clump renderer zeroes faint tails itself, so the convolution's denormal guard is
    # only needed for interpolated stamps
    band_kernels = kernels.to(device=device, dtype=dtype) * flux[..., None, None]
    if subpixel:
        arcs = psf.convolve_subpixel(moments, band_kernels)  # moments: flux and moments, (N, 6, H, W)
    else:
        arcs = psf.convolve(unit[:, None], band_kernels, floor_faint=stamps is not None)
    if refined is None:
        refined = torch.zeros_like(magnification)
    return ArcImages(arcs=arcs, magnification=magnification, source_flux=flux, kernels=kernels,
                     refined_fraction=refined)


def lens_e1e2(params: dict[str, np.ndarray]) -> None:
    """Fill lens/source e1, e2 and shear gamma1, gamma2 from (q, phi) and (gamma_ext, gamma_phi)."""
    if "lens_q" not in params:  # no lens model (e.g. re-injected real arc residuals)
        return
    params["lens_e1"], params["lens_e2"] = phi_q_to_e1e2(params["lens_phi"], params["lens_q"])
    if "src_q" in params:
        params["src_e1"], params["src_e2"] = phi_q_to_e1e2(params["src_phi"], params["src_q"])
    params["gamma1"] = params["gamma_ext"] * np.cos(2 * params["gamma_phi"])
    params["gamma2"] = params["gamma_ext"] * np.sin(2 * params["gamma_phi"])


def inject_arcs(hosts: torch.Tensor, arc: ArcImages, *, sky_sigma: torch.Tensor,
                arc_poisson_gain: float | None = None, generator: torch.Generator | None = None):
    """Add arcs to (N, 3, H, W) hosts; returns (images, arcs, arc_snr, injected_flux) tensors."""
    arcs = arc.arcs
    if arc_poisson_gain is not None:
        arcs = noise.add_arc_poisson_noise(arcs, arc_poisson_gain, generator)
    images = hosts.to(arcs.dtype) + arcs
    snr = noise.arc_snr(arc.arcs, sky_sigma.to(arcs.dtype))
    return images, arcs, snr, arcs.sum(dim=(-2, -1))
