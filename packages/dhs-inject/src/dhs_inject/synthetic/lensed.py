"""Lensed images of the synthetic survey's rich sources, through dhs-inject's ray-shooting renderer.

A source is a diffuse exponential whose isophotes are distorted by m = 1, 2, 3 Fourier modes
(irregular, lopsided light) plus 2-6 compact Gaussian star-forming clumps; clumps and diffuse
light have different colours, so the arcs carry a colour gradient. Lensing (SIE + external
shear, lenstronomy conventions) is :func:`dhs_inject.lensing.ray_shoot` on the sub-pixel grid of
:func:`dhs_inject.render.subpixel_grid`, as in :func:`dhs_inject.render.lensed_unit_image`, but the
rays are shot once and shared by the three bands (the source colour varies across it).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dhs_inject.lensing import ray_shoot
from dhs_inject.render import subpixel_grid
from dhs_inject.synthetic.morphology import PIXEL_SCALE

SUPERSAMPLE = 2
_N_THETA = 256


def _irregular_norm(modes: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Flux of a profile I(R / (1 + d(theta))) relative to I(R): the angular mean of (1 + d)^2."""
    theta = torch.linspace(0, 2 * math.pi, _N_THETA + 1, dtype=modes.dtype)[:-1]
    m = torch.arange(1, modes.shape[1] + 1, dtype=modes.dtype)
    d = (modes[:, :, None] * torch.cos(m[None, :, None] * theta - phases[:, :, None])).sum(1)
    return ((1 + d) ** 2).mean(1)


def _surface_brightness(p: dict[str, torch.Tensor], bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """(N, 3, ...) source-plane surface brightness (nanomaggies / arcsec^2) at (N, ...) positions."""
    col = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
    bx, by = bx[:, None], by[:, None]
    dx, dy = bx - col(p["src_x"]), by - col(p["src_y"])
    c, s = col(torch.cos(p["src_phi"])), col(torch.sin(p["src_phi"]))
    xr, yr = c * dx + s * dy, -s * dx + c * dy
    q = col(p["src_q"])
    radius = torch.sqrt(q * xr * xr + yr * yr / q + 1e-8)
    theta = torch.atan2(yr, xr)
    distort = torch.ones_like(radius)
    for m in range(p["src_modes"].shape[1]):
        distort = distort + col(p["src_modes"][:, m]) * torch.cos((m + 1) * theta - col(p["src_mode_phase"][:, m]))
    # exponential (n = 1): R_e = 1.678 h; unit flux 1 / (2 pi h^2) before distortion
    h = col(p["src_r_e"]) / 1.678
    norm = (p["src_diffuse_flux"] / (2 * math.pi * p["diffuse_norm"][:, None]))[..., None, None] / h**2
    out = norm * torch.exp(-radius / (h * distort))
    for k in range(p["clump_flux"].shape[1]):
        sig2 = col(p["clump_sigma"][:, k] ** 2)
        # clump positions are absolute source-plane positions (offsets already added to src_x/y)
        r2 = (bx - col(p["clump_x"][:, k])) ** 2 + (by - col(p["clump_y"][:, k])) ** 2
        out = out + p["clump_flux"][:, k, :, None, None] / (2 * math.pi * sig2) * torch.exp(-0.5 * r2 / sig2)
    return out


def lensed_source_images(cat: dict[str, np.ndarray], stamp: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3, H, W) unconvolved arc fluxes per pixel of catalog rows ``cat`` and (M,) magnifications."""
    t = lambda v: torch.as_tensor(np.asarray(v), dtype=torch.float32)  # noqa: E731
    keys = ("src_x", "src_y", "src_phi", "src_q", "src_r_e", "src_modes", "src_mode_phase", "src_diffuse_flux",
            "clump_flux", "clump_sigma", "clump_x", "clump_y")
    p = {k: t(cat[k]) for k in keys}
    p["clump_x"] = p["clump_x"] + p["src_x"][:, None]
    p["clump_y"] = p["clump_y"] + p["src_y"][:, None]
    p["diffuse_norm"] = _irregular_norm(p["src_modes"], p["src_mode_phase"])
    m = len(cat["theta_e"])
    lens = {"theta_e": t(cat["theta_e"]), "e1": t(cat["lens_e1"]), "e2": t(cat["lens_e2"]),
            "center_x": torch.zeros(m), "center_y": torch.zeros(m), "gamma1": t(cat["gamma1"]),
            "gamma2": t(cat["gamma2"])}
    x, y = subpixel_grid(stamp, PIXEL_SCALE, SUPERSAMPLE)
    bx, by = ray_shoot(x[None], y[None], {k: v.reshape(-1, 1, 1) for k, v in lens.items()})
    sb = _surface_brightness(p, bx, by)
    s = SUPERSAMPLE
    # mean surface brightness over each pixel's sub-pixels times the pixel area = flux per pixel
    images = (sb.reshape(m, 3, stamp, s, stamp, s).mean(dim=(3, 5)) * PIXEL_SCALE**2).numpy()
    source_r = (p["src_diffuse_flux"][:, 1] + p["clump_flux"][:, :, 1].sum(1)).numpy()
    return images, images[:, 1].sum((1, 2)) / np.maximum(source_r, 1e-30)


def brightness_scale(arcs_seen: np.ndarray, host_seen_r: np.ndarray, sigma: np.ndarray, contrast: np.ndarray,
                     snr: np.ndarray, mag_range: np.ndarray) -> np.ndarray:
    """(M,) factors that bring each source to its brightness target (images are linear in flux).

    ``arcs_seen`` (M, 3, H, W) are the PSF-convolved arcs, ``host_seen_r`` (M, H, W) the convolved
    host in r and ``sigma`` (M, 3) the per-pixel sky noise. The arc is made bright enough for both
    (i) its peak r surface brightness to be ``contrast`` times the host's at that pixel (visible
    against the deflector's light) and (ii) its matched-filter SNR alone, sqrt(sum over g, r, z
    pixels of (arc / sigma)^2), to be ``snr`` (visible against the sky), whichever needs more flux.
    The total lensed r flux in the stamp is then clipped to ``mag_range`` (M, 2) = (bright, faint)
    magnitudes, which keeps the population realistic where a target would need an implausibly
    bright source (or allows a fainter one).
    """
    m = arcs_seen.shape[0]
    r = arcs_seen[:, 1].reshape(m, -1).astype(np.float64)
    peak = r.argmax(1)
    arc_peak = np.maximum(r[np.arange(m), peak], 1e-30)
    host_at = host_seen_r.reshape(m, -1)[np.arange(m), peak]
    arc_snr = np.sqrt(((arcs_seen / sigma[:, :, None, None]) ** 2).sum((1, 2, 3)))
    scale = np.maximum(contrast * host_at / arc_peak, snr / np.maximum(arc_snr, 1e-30))
    flux = np.maximum(r.sum(1), 1e-30)
    return np.clip(scale, 10 ** ((22.5 - mag_range[:, 1]) / 2.5) / flux, 10 ** ((22.5 - mag_range[:, 0]) / 2.5) / flux)
