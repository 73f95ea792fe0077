"""Noise model: per-pixel sky sigma, arc SNR and optional Poisson noise of the arc's photons.

``psfdepth`` is the survey's inverse variance of a PSF-weighted flux measurement (1/nanomaggy^2,
the Legacy Surveys catalogue column). For an optimal PSF fit on sky-dominated pixels
``var(F) = sigma_pix^2 / sum(P^2)`` (P the unit-sum PSF), so
``sigma_pix = sqrt(sum(P^2)) / sqrt(psfdepth)``; ``1 / sum(P^2)`` is the noise-equivalent area
(4 pi sigma^2 pixels for a Gaussian). :func:`sky_sigma_from_psfdepth` is that relation for the
injection engine and for the synthetic survey (which tabulates ``sqrt(sum(P^2))`` per PSF FWHM with
:func:`psf_noise_scale` and calls :func:`sky_sigma_for_depth`), so both put the same noise under the
same PSF and depth.

The outer-ring estimator uses the pixels beyond ``ring_frac`` of the half-size from the centre and
returns ``MAD_TO_SIGMA`` x the median absolute deviation about the median (robust to neighbours and
to NaN), the constant the training data are normalised with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dhs_data.preprocess.annulus import MAD_TO_SIGMA

__all__ = ["MAD_TO_SIGMA", "add_arc_poisson_noise", "add_sky_noise", "arc_snr", "psf_noise_scale",
           "sky_sigma_for_depth", "sky_sigma_from_psfdepth", "sky_sigma_from_ring"]


def psf_noise_scale(kernels: torch.Tensor) -> torch.Tensor:
    """(..., K, K) unit-sum PSFs -> (...) ``sqrt(sum P^2)``: the per-pixel sky sigma at unit psfdepth."""
    return torch.sqrt((kernels**2).sum(dim=(-2, -1)))


def sky_sigma_for_depth(noise_scale: Any, psfdepth: Any) -> Any:
    """Per-pixel sky sigma ``noise_scale / sqrt(psfdepth)`` (numpy or torch, broadcasting).

    ``noise_scale`` is :func:`psf_noise_scale` of the PSF; a zero depth is floored at the smallest
    normal float, so it gives a huge but finite sigma rather than a division by zero.
    """
    if isinstance(psfdepth, torch.Tensor):
        return noise_scale / torch.sqrt(psfdepth.clamp_min(torch.finfo(psfdepth.dtype).tiny))
    depth = np.asarray(psfdepth)
    return noise_scale / np.sqrt(np.maximum(depth, np.finfo(depth.dtype).tiny))


def sky_sigma_from_psfdepth(psfdepth: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """(N, B) inverse-variance depths and (N, B, K, K) unit-sum PSFs -> (N, B) sigma per pixel."""
    return sky_sigma_for_depth(psf_noise_scale(kernels), psfdepth)


def sky_sigma_from_ring(images: torch.Tensor, ring_frac: float = 0.8) -> torch.Tensor:
    """(N, B, H, W) cutouts -> (N, B) robust sky sigma from the outer ring (MAD, NaN ignored)."""
    h, w = images.shape[-2:]
    yy = torch.arange(h, dtype=torch.float64, device=images.device) - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float64, device=images.device) - (w - 1) / 2
    r = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    ring = images[..., r >= ring_frac * min(h, w) / 2]
    med = torch.nanmedian(ring, dim=-1, keepdim=True).values
    mad = torch.nanmedian((ring - med).abs(), dim=-1).values
    return MAD_TO_SIGMA * mad


def arc_snr(arc: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Matched-filter SNR of the arc on white sky noise: sqrt(sum_b sum_pix (arc / sigma_b)^2)."""
    per_band = (arc**2).sum(dim=(-2, -1)) / sigma.clamp_min(torch.finfo(arc.dtype).tiny) ** 2
    return torch.sqrt(per_band.sum(dim=-1))


def add_sky_noise(images: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add white Gaussian sky noise of (N, B) sigma to (N, B, H, W) images."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return images + noise * sigma[..., None, None]


def add_arc_poisson_noise(arc: torch.Tensor, gain: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson noise of the arc's own photons; ``gain`` in electrons per nanomaggy. Zero-mean.

    The counts are drawn on the generator's device (the CPU for ``torch.Generator()``), so an arc
    rendered on a GPU gets the same random stream, and the same noise, as one rendered on the CPU.
    """
    electrons = (arc * gain).clamp_min(0)
    draws = torch.poisson(electrons.to(generator.device), generator=generator).to(arc.device)
    return arc + (draws - electrons) / gain
