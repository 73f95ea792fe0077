"""Point-spread functions and FFT convolution, batched over (N, band).

FWHM per band comes from the survey's r-band ``psfsize_r`` (arcsec) scaled by ``band_scale``
(default g 1.05, r 1.00, z 0.94: atmospheric seeing scales as lambda^-1/5). Kernels are sampled at
pixel centres on an odd square grid and normalised to unit sum, so convolution conserves flux.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from dhs_inject.errors import InjectionParameterError, require

__all__ = ["DEFAULT_BAND_SCALE", "band_fwhm", "convolve", "gaussian_kernel", "kernel_from_file",
           "moffat_kernel", "normalise_kernel"]

DEFAULT_BAND_SCALE = (1.05, 1.00, 0.94)
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def band_fwhm(psfsize_r: torch.Tensor, band_scale=DEFAULT_BAND_SCALE) -> torch.Tensor:
    """(N,) r-band FWHM in arcsec -> (N, 3) g, r, z FWHM."""
    require(bool((psfsize_r > 0).all()), "psfsize_r (PSF FWHM) must be > 0 arcsec")
    scale = torch.as_tensor(band_scale, dtype=psfsize_r.dtype, device=psfsize_r.device)
    return psfsize_r[:, None] * scale


def _offsets(radius: int, dtype, device) -> torch.Tensor:
    return torch.arange(-radius, radius + 1, dtype=dtype, device=device)


def normalise_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Divide (..., K, K) kernels by their sum; refuse kernels that cannot be normalised."""
    total = kernel.sum(dim=(-2, -1), keepdim=True)
    ok = bool(torch.isfinite(kernel).all()) and bool((total > 0).all())
    require(ok, "PSF kernel is not normalisable: it must be finite with a positive sum")
    return kernel / total


def gaussian_kernel(fwhm: torch.Tensor, pixel_scale: float, truncate: float = 5.0) -> torch.Tensor:
    """Gaussian kernels for a batch of FWHMs (any shape S, arcsec) -> (S..., K, K), K from the widest."""
    require(bool((fwhm > 0).all()), "PSF FWHM must be > 0 arcsec")
    sigma = fwhm / FWHM_PER_SIGMA / pixel_scale
    radius = max(1, int(math.ceil(truncate * float(sigma.max()))))
    d = _offsets(radius, fwhm.dtype, fwhm.device)
    r2 = d[:, None] ** 2 + d[None, :] ** 2
    s2 = (sigma**2)[..., None, None]
    return normalise_kernel(torch.exp(-0.5 * r2 / s2))


def moffat_kernel(fwhm: torch.Tensor, pixel_scale: float, beta: float = 3.5, size_fwhm: float = 4.0):
    """Moffat ``(1 + (r/alpha)^2)^-beta`` kernels, alpha = FWHM / (2 sqrt(2^(1/beta) - 1)).

    The kernel extends to ``size_fwhm`` times the widest FWHM (Moffat wings are heavy; the
    truncated remainder is renormalised away).
    """
    require(beta > 1, f"Moffat beta must be > 1 for a normalisable profile; got {beta}")
    require(bool((fwhm > 0).all()), "PSF FWHM must be > 0 arcsec")
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1)) / pixel_scale
    radius = max(1, int(math.ceil(size_fwhm * float(fwhm.max()) / pixel_scale)))
    d = _offsets(radius, fwhm.dtype, fwhm.device)
    r2 = d[:, None] ** 2 + d[None, :] ** 2
    return normalise_kernel((1 + r2 / (alpha**2)[..., None, None]) ** (-beta))


def kernel_from_file(path: str | Path) -> np.ndarray:
    """Read a pixel PSF kernel from ``.npy`` or FITS: (K, K) shared by all bands or (3, K, K) per band."""
    path = Path(path)
    if not path.is_file():
        raise InjectionParameterError(f"PSF kernel file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        kernel = np.load(path, allow_pickle=False)
    else:
        from astropy.io import fits

        kernel = np.asarray(fits.getdata(path), dtype=np.float64)
    if kernel.ndim not in (2, 3) or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 == 0:
        raise InjectionParameterError(
            f"PSF kernel {str(path)!r} has shape {kernel.shape}; expected an odd square (K, K) or (3, K, K)"
        )
    return normalise_kernel(torch.as_tensor(kernel, dtype=torch.float64)).numpy()


def _fast_len(n: int) -> int:
    best = n
    while True:
        m = best
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return best
        best += 1


def convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """FFT convolution of (N, B, H, W) images with (N, B, K, K) or (B, K, K) kernels ('same' size).

    Zero padding: flux leaving the stamp is lost, as it is from a real cutout.
    """
    h, w = images.shape[-2:]
    k = kernels.shape[-1]
    # pad to 2^a 3^b 5^c lengths, where pocketfft is fastest
    shape = (_fast_len(h + k - 1), _fast_len(w + k - 1))
    spec = torch.fft.rfft2(images, s=shape) * torch.fft.rfft2(kernels, s=shape)
    full = torch.fft.irfft2(spec, s=shape)
    r = k // 2
    return full[..., r:r + h, r:r + w]
