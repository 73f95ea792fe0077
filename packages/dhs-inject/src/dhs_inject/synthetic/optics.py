"""Tabulated Moffat optical transfer functions for fast batched PSF convolution of whole stamps.

Kernels come from :func:`dhs_inject.psf.moffat_kernel` (the PSF the injection engine uses with
``psf = "moffat"``) on a fine FWHM grid (:func:`moffat_table`); each is placed with
its centre at pixel (0, 0) of a zero-padded ``P x P`` grid and Fourier transformed once. A stamp
then costs one forward and one inverse real FFT with the nearest tabulated kernel (FWHM step
0.005", i.e. < 0.3% error in FWHM). The pad (>= 32 px) keeps the
Moffat wings that wrap around the periodic FFT below 1e-3 of the peak.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft
import torch

from dhs_inject.noise import psf_noise_scale, sky_sigma_for_depth
from dhs_inject.psf import MOFFAT_GRID_FWHM, moffat_kernel
from dhs_inject.synthetic.morphology import PIXEL_SCALE

# the table's widest FWHM is the one up to which every Moffat kernel shares a grid, so a tabulated
# kernel equals the injection engine's kernel of the same FWHM
FWHM_MIN, FWHM_MAX, FWHM_STEP = 0.6, MOFFAT_GRID_FWHM, 0.005


def padded_size(stamp: int) -> int:
    return sfft.next_fast_len(stamp + 32, real=True)


def moffat_table(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_fwhm,) tabulated FWHMs in arcsec and their (n_fwhm, K, K) float64 unit-sum Moffat kernels."""
    fwhm = torch.arange(FWHM_MIN, FWHM_MAX + FWHM_STEP / 2, FWHM_STEP, dtype=torch.float64)
    return fwhm, moffat_kernel(fwhm, PIXEL_SCALE, beta=beta)


@lru_cache(maxsize=4)
def otf_table(stamp: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(n_fwhm, P, P//2+1) complex64 OTFs and (n_fwhm,) per-pixel sky sigma for unit psfdepth."""
    size = padded_size(stamp)
    fwhm, kernels = moffat_table(beta)
    k = kernels.shape[-1]
    if k > size:  # the widest kernel must fit in the padded grid; crop symmetric wings otherwise
        cut = (k - size) // 2 + 1
        kernels = kernels[:, cut:-cut, cut:-cut]
        kernels = kernels / kernels.sum(dim=(-2, -1), keepdim=True)
        k = kernels.shape[-1]
    # sigma_pix = sqrt(sum P^2) / sqrt(psfdepth): psfdepth is the inverse variance of a PSF-fit flux
    unit_sigma = psf_noise_scale(kernels).numpy()
    grid = np.zeros((fwhm.numel(), size, size))
    grid[:, :k, :k] = kernels.numpy()
    grid = np.roll(grid, (-(k // 2), -(k // 2)), axis=(1, 2))
    return sfft.rfft2(grid).astype(np.complex64), unit_sigma


def nearest(fwhm: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Entries of a per-FWHM table at (...) FWHMs in arcsec (nearest tabulated FWHM)."""
    i = np.rint((np.clip(fwhm, FWHM_MIN, FWHM_MAX) - FWHM_MIN) / FWHM_STEP).astype(int)
    return table[np.minimum(i, table.shape[0] - 1)]


def convolve_stamps(intrinsic: np.ndarray, fwhm: np.ndarray, beta: float,
                    point_sources: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """PSF-convolve (N, B, H, W) images with per-(object, band) Moffat PSFs of ``fwhm`` (N, B).

    ``point_sources`` = (col, row, flux) with shapes (N, K), (N, K), (N, K, B): stars added in
    Fourier space as phase ramps, i.e. exact sub-pixel PSF copies.
    """
    n, b, h, w = intrinsic.shape
    table, _ = otf_table(h, float(beta))
    size = table.shape[1]
    spec = sfft.rfft2(intrinsic, s=(size, size), workers=1)
    if point_sources is not None:
        col, row, flux = point_sources
        ky = sfft.fftfreq(size).astype(np.float32)
        kx = sfft.rfftfreq(size).astype(np.float32)
        for k in range(col.shape[1]):
            on = np.flatnonzero(flux[:, k, :].any(axis=1))
            if on.size == 0:
                continue
            ex = np.exp(-2j * np.pi * kx[None] * col[on, k, None]).astype(np.complex64)
            ey = np.exp(-2j * np.pi * ky[None] * row[on, k, None]).astype(np.complex64)
            spec[on] += flux[on, k, :, None, None].astype(np.float32) * (ey[:, None, :, None] * ex[:, None, None, :])
    spec *= nearest(fwhm, table)
    return sfft.irfft2(spec, s=(size, size), workers=1)[..., :h, :w].astype(np.float32)


def sky_sigma(fwhm: np.ndarray, psfdepth: np.ndarray, stamp: int, beta: float) -> np.ndarray:
    """(N, B) per-pixel sky noise sigma (nanomaggies) for PSF FWHMs and inverse-variance depths.

    :func:`dhs_inject.noise.sky_sigma_from_psfdepth` of the tabulated kernel nearest in FWHM.
    """
    _, unit_sigma = otf_table(stamp, float(beta))
    return sky_sigma_for_depth(nearest(fwhm, unit_sigma), psfdepth)
