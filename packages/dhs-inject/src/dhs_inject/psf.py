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


def _spectrum(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """2-D rfft of (..., h, w) zero-padded to ``shape``: the row transform runs on the h non-zero
    rows only, then the column transform pads to the full length (same numbers as rfft2, less work)."""
    rows = torch.fft.rfft(images, n=shape[1], dim=-1)
    return torch.fft.fft(rows, n=shape[0], dim=-2)


def _kernel_spectrum(kernels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Spectrum of (..., K, K) kernels. A separable kernel (a Gaussian) k = a b^T / sum(k), with a, b
    its row and column sums, is transformed as the outer product of two 1-d transforms; any other
    kernel through :func:`_spectrum`."""
    a, b = kernels.sum(dim=-1), kernels.sum(dim=-2)
    total = kernels.sum(dim=(-2, -1))
    safe_total = torch.where(total == 0, torch.ones_like(total), total)
    outer = a[..., :, None] * b[..., None, :] / safe_total[..., None, None]
    scale = kernels.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(kernels.dtype).tiny)
    tol = 64 * torch.finfo(kernels.dtype).eps
    if bool((total != 0).all()) and bool(((outer - kernels).abs().amax(dim=(-2, -1)) <= tol * scale).all()):
        rows = torch.fft.fft(a / safe_total[..., None], n=shape[0], dim=-1)
        return rows[..., :, None] * torch.fft.rfft(b, n=shape[1], dim=-1)[..., None, :]
    return _spectrum(kernels, shape)


def convolve(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """FFT convolution of (N, B, H, W) images with (N, B, K, K) or (B, K, K) kernels ('same' size).

    Images and kernels broadcast, so an (N, 1, H, W) image shared by the bands is transformed once.
    Zero padding: flux leaving the stamp is lost, as it is from a real cutout.
    """
    h, w = images.shape[-2:]
    k = kernels.shape[-1]
    r = k // 2
    # The 'same' window [r, r + h) of the linear convolution is free of circular wrap-around as soon
    # as the period is >= h + r (the tail of the full h + k - 1 result folds onto rows < r only);
    # lengths are rounded up to 2^a 3^b 5^c, where pocketfft is fastest.
    shape = (_fast_len(h + r), _fast_len(w + r))
    spec = _spectrum(images, shape) * _kernel_spectrum(kernels, shape)
    # inverse: column transform over every frequency row, then the real row transform only for the
    # h output rows that are kept
    cols = torch.fft.ifft(spec, dim=-2)[..., r:r + h, :]
    return torch.fft.irfft(cols, n=shape[1], dim=-1)[..., r:r + w]
