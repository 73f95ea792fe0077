"""Point-spread functions and convolution (Toeplitz products or FFT), batched over (N, band).

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

__all__ = ["DEFAULT_BAND_SCALE", "MOFFAT_GRID_FWHM", "band_fwhm", "convolve", "convolve_subpixel", "gaussian_kernel",
           "kernel_from_file", "moffat_kernel", "normalise_kernel"]

DEFAULT_BAND_SCALE = (1.05, 1.00, 0.94)
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
#: arcsec; Moffat kernels of every FWHM up to this share one grid (see :func:`moffat_kernel`); it is
#: the top of the synthetic survey's FWHM table, so its tabulated kernels are exactly these
MOFFAT_GRID_FWHM = 2.3


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
    half_chi2 = 0.5 * d**2 / (sigma**2)[..., None]
    # a circular Gaussian is the outer product of two 1-d ones. The grid is sized by the widest
    # kernel; each kernel keeps its own taps within truncate x sigma + 1 pixel, and none below
    # e^-30 of its centre, so narrow kernels do not carry tails that underflow into (slow)
    # denormal floats
    keep = (d.abs() <= truncate * sigma[..., None] + 1) & (half_chi2 < 30)
    profile = torch.where(keep, torch.exp(-half_chi2), 0.0)
    profile = profile / profile.sum(-1, keepdim=True)
    return normalise_kernel(profile[..., :, None] * profile[..., None, :])


def moffat_kernel(fwhm: torch.Tensor, pixel_scale: float, beta: float = 3.5, size_fwhm: float = 4.0):
    """Moffat ``(1 + (r/alpha)^2)^-beta`` kernels, alpha = FWHM / (2 sqrt(2^(1/beta) - 1)).

    The one Moffat PSF of dhs: the injection engine (``psf = "moffat"``) and the synthetic survey
    (which tabulates it per FWHM, :mod:`dhs_inject.synthetic.optics`) both sample it here. The
    kernel grid extends to ``size_fwhm`` times ``max(MOFFAT_GRID_FWHM, widest FWHM)`` (Moffat wings
    are heavy; the truncated remainder, < 0.12 % of the flux for beta = 3.5 beyond 4 FWHM, is
    renormalised away). A grid fixed for every FWHM up to ``MOFFAT_GRID_FWHM``, rather than sized
    by the widest FWHM of the batch, makes a kernel, and so an injection, independent of the other
    FWHMs it is batched with.
    """
    require(beta > 1, f"Moffat beta must be > 1 for a normalisable profile; got {beta}")
    require(bool((fwhm > 0).all()), "PSF FWHM must be > 0 arcsec")
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1)) / pixel_scale
    widest = max(MOFFAT_GRID_FWHM, float(fwhm.max()))
    radius = max(1, int(math.ceil(size_fwhm * widest / pixel_scale)))
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


def _wrapped(kernels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(..., Ky, Kx) odd kernels zero-padded to ``shape`` with their centre pixel moved to index
    (0, 0) (negative offsets wrap to the end), so the circular convolution is 'same'-aligned."""
    ky, kx = kernels.shape[-2:]
    padded = kernels.new_zeros(*kernels.shape[:-2], *shape)
    padded[..., :ky, :kx] = kernels
    return torch.roll(padded, shifts=(-(ky // 2), -(kx // 2)), dims=(-2, -1))


def _wrapped_1d(profiles: torch.Tensor, length: int) -> torch.Tensor:
    """(..., K) odd 1-d profiles zero-padded to ``length``, centre moved to index 0 (see :func:`_wrapped`)."""
    k = profiles.shape[-1]
    padded = profiles.new_zeros(*profiles.shape[:-1], length)
    padded[..., :k] = profiles
    return torch.roll(padded, shifts=-(k // 2), dims=-1)


def _floor_faint(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Zero the values below 2^-30 (~1e-9) of the peak over the last ``ndim`` axes.

    Far tails of PSFs and sources underflow towards denormal floats, and their products do; x86
    arithmetic on denormals (in the BLAS, the FFT) is ~10x slower. Values this far below the peak
    are well under float32 resolution of any flux sum, so zeroing them changes no result.
    """
    dims = tuple(range(-ndim, 0))
    peak = values.abs().amax(dim=dims, keepdim=True)
    return torch.where(values.abs() >= peak * 2.0**-30, values, 0.0)


def _separable_factors(kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(column profile a, row profile b) with k = a b^T for every kernel (Gaussian PSFs, with or
    without a flux factor), else None (Moffat, pixel kernels). Checked numerically."""
    total = kernels.sum(dim=(-2, -1))
    if not bool((total != 0).all()):
        return None
    a, b = kernels.sum(dim=-1) / total[..., None], kernels.sum(dim=-2)
    scale = kernels.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(kernels.dtype).tiny)
    misfit = (a[..., :, None] * b[..., None, :] - kernels).abs().amax(dim=(-2, -1))
    return (a, b) if bool((misfit <= 64 * torch.finfo(kernels.dtype).eps * scale).all()) else None


def _toeplitz(profile: torch.Tensor, n: int) -> torch.Tensor:
    """(..., n, n) matrices T with T[i, m] = profile[i - m + r]: 'same' 1-d convolution as T @ x.

    Built by copying a Hankel view (v[i + m'], strides (1, 1)) of one padded vector with its
    columns reversed; taps beyond +-(n - 1) never reach a 'same' output and are cut off.
    """
    profile = _floor_faint(profile, 1)
    r = profile.shape[-1] // 2
    if r > n - 1:
        profile, r = profile[..., r - (n - 1):r + n], n - 1
    k = profile.shape[-1]
    v = profile.new_zeros(*profile.shape[:-1], 2 * n - 1)
    # v[s] = profile[s - (n - 1) + r], so T[i, m] = v[i - m + n - 1] = hankel[i, n - 1 - m]
    v[..., n - 1 - r:n - 1 - r + k] = profile
    v = v.contiguous()
    hankel = v.as_strided((*v.shape[:-1], n, n), (*v.stride()[:-1], 1, 1))
    return hankel.flip(-1)


def _separable_convolve(images: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """A @ x @ B^T with the Toeplitz matrices of the column and row profiles (see :func:`convolve`)."""
    h, w = images.shape[-2:]
    scale = row.sum(-1, keepdim=True)  # col sums to 1, so row = scale * col for a k = k^T kernel
    tol = 64 * torch.finfo(row.dtype).eps * row.abs().amax(-1, keepdim=True)
    symmetric = h == w and bool(((row - scale * col).abs() <= tol).all())
    # a transpose-symmetric kernel (a circular Gaussian times a flux): one matrix for both axes,
    # the flux applied to the result in place
    left = _toeplitz(col, h)
    right = left if symmetric else _toeplitz(row, w)
    lead = images.shape[:-3]
    if images.shape[-3] == 1 and left.shape[:-3] == lead and len(lead) > 0:
        # one image shared by the B bands: the B left factors stacked as one (B h, h) matrix, so
        # the first product is one matrix per injection and no broadcast copy of the image is made
        n_band = left.shape[-3]
        out = (left.reshape(*lead, n_band * h, h) @ images[..., 0, :, :]).view(*lead, n_band, h, w)
        out = out @ right.mT
    else:
        out = left @ images @ right.mT
    return out.mul_(scale[..., None]) if symmetric else out


def convolve(images: torch.Tensor, kernels: torch.Tensor, *, floor_faint: bool = True) -> torch.Tensor:
    """Convolution of (N, B, H, W) images with (N, B, K, K) or (B, K, K) kernels ('same' size).

    Images and kernels broadcast, so an (N, 1, H, W) image shared by the bands is used as is.
    Zero padding: flux leaving the stamp is lost, as it is from a real cutout. Kernel taps, and
    with ``floor_faint`` image values, below ~1e-9 of their peak are treated as zero (see
    :func:`_floor_faint`; callers whose images hold no such tails may skip that pass).

    A separable kernel (Gaussian) k = a b^T is applied as two matrix products A @ x @ B^T with the
    banded Toeplitz matrices of a and b: for survey stamps (~100 px) the BLAS does this faster
    than the FFT route, whose three band spectra cost more memory traffic than arithmetic
    (``benchmarks/bench_inject.py``). Other kernels go through the FFT.
    """
    h, w = images.shape[-2:]
    if floor_faint:
        images = _floor_faint(images, 2)
    factors = _separable_factors(kernels)
    if factors is not None:
        return _separable_convolve(images, *factors)
    r = kernels.shape[-1] // 2
    # taps further out than the stamp never reach a 'same' output pixel: crop them per axis
    ry, rx = min(r, h - 1), min(r, w - 1)
    kernels = kernels[..., r - ry:r + ry + 1, r - rx:r + rx + 1]
    # Period >= h + ry: the kernel is stored centred on index 0 (negative offsets wrapped to the
    # end), so output pixel i gathers input pixels i - ry .. i + ry, and the ones with index < 0
    # or >= h land on the zero padding as long as h + ry <= period; the 'same' result is simply
    # the first h x w values. Lengths are rounded up to 2^a 3^b 5^c, where FFTs are fastest.
    shape = (_fast_len(h + ry), _fast_len(w + rx))
    spec = torch.fft.rfft2(images, s=shape) * torch.fft.rfft2(_wrapped(kernels, shape))
    return torch.fft.irfft2(spec, s=shape)[..., :h, :w]


def convolve_subpixel(planes: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """PSF convolution at the sub-pixel scale, then binning, from per-pixel light moments.

    ``planes`` (N, 6, H, W): the flux per pixel, then the sums over each pixel of flux x (u, v,
    u^2, u v, v^2), (u, v) the offsets (pixels) of the light from the pixel centre (x along
    columns, y along rows). ``kernels`` (N, B, K, K) or (B, K, K) PSFs sampled at pixel centres.
    Returns (N, B, H, W).

    Convolving the sub-pixel image with the PSF and averaging each output pixel's sub-pixels puts
    every element of light at its own position and integrates the PSF over the output pixel:
    ``out_i = sum_j f_j Kbar(x_i - x_j)``, Kbar the PSF averaged over a pixel-sized box. In
    Fourier space the box is ``sinc(fx) sinc(fy)``, and light offset by d from its pixel centre
    multiplies that pixel's spectrum by ``exp(-i w.d) = 1 - i w.d - (w.d)^2 / 2 + O(d^3)``; the
    moments carry that expansion to second order (third-order terms, |w d|^3 / 6 weighted by the
    PSF spectrum, stay below ~1e-3 of the peak for FWHM >= 3 pixels). The pixel-sampled PSF
    stands for the continuous one through its band-limited interpolation, exact to its aliasing
    (< 1e-3 for Gaussian FWHM >= 2.8 pixels). Zero padding as in :func:`convolve`.
    """
    h, w = planes.shape[-2:]
    r = kernels.shape[-1] // 2
    ry, rx = min(r, h - 1), min(r, w - 1)
    kernels = kernels[..., r - ry:r + ry + 1, r - rx:r + rx + 1]
    shape = (_fast_len(h + ry), _fast_len(w + rx))
    real = planes.dtype
    wy = 2 * math.pi * torch.fft.fftfreq(shape[0], dtype=real, device=planes.device)[:, None]
    wx = 2 * math.pi * torch.fft.rfftfreq(shape[1], dtype=real, device=planes.device)[None, :]
    box_y, box_x = torch.sinc(wy / (2 * math.pi)), torch.sinc(wx / (2 * math.pi))
    spec = torch.fft.rfft2(planes, s=shape)
    m, mu, mv, muu, muv, mvv = spec.unbind(-3)
    # the second-order expansion of exp(-i w.d), summed over each pixel's light
    light = torch.addcmul(m, wx * mu + wy * mv, torch.tensor(-1j, dtype=m.dtype, device=m.device))
    light -= (0.5 * wx * wx) * muu + (wx * wy) * muv + (0.5 * wy * wy) * mvv
    factors = _separable_factors(kernels)
    if factors is not None:
        # a separable kernel a b^T has the separable spectrum A(wy) B(wx): two 1-d transforms and
        # an outer product instead of a 2-d transform of every zero-padded kernel
        col, row = factors
        kspec = ((torch.fft.fft(_wrapped_1d(col, shape[0])) * box_y[:, 0])[..., :, None]
                 * (torch.fft.rfft(_wrapped_1d(row, shape[1])) * box_x[0])[..., None, :])
    else:
        kspec = torch.fft.rfft2(_wrapped(kernels, shape)) * (box_y * box_x)
    return torch.fft.irfft2(kspec * light[..., None, :, :], s=shape)[..., :h, :w]
