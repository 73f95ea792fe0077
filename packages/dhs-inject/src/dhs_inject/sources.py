"""Source-plane surface brightness: elliptical Sersic, Gaussian star-forming clumps, pixel stamps.

Units: surface brightness in nanomaggies per arcsec^2, positions in arcsec, fluxes in nanomaggies
(AB zero point 22.5: ``flux = 10 ** ((22.5 - mag) / 2.5)``).

Sersic convention (as lenstronomy's ``SERSIC_ELLIPSE``): ``I(R) = I_e exp(-b_n [(R/R_e)^(1/n) - 1])``
with the product-averaged elliptical radius ``R^2 = q x'^2 + y'^2 / q`` in the major-axis frame, so
``R_e`` is the circularised half-light radius and the total flux is ``2 pi n R_e^2 I_e e^b b^-2n
Gamma(2n)`` independent of q. ``b_n`` defaults to the exact half-light value
(:func:`sersic_b_n`, the same function the synthetic survey's host galaxies use); lenstronomy
instead uses the linear fit ``1.9992 n - 0.3271``, which can be passed as ``b_n`` to reproduce it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import gammaincinv

from dhs_inject._arrays import finish, prepare
from dhs_inject.errors import require

__all__ = ["BANDS", "clump_surface_brightness", "mag_to_nanomaggies", "band_fluxes", "sersic_b_n",
           "sersic_surface_brightness", "stamp_surface_brightness"]

BANDS = ("g", "r", "z")
AB_ZERO_POINT = 22.5
#: floor of 1 - e1^2 - e2^2 = 4q / (1 + q)^2 in the Sersic metric, reached only as q -> 0; shared
#: with the fused kernel of :mod:`dhs_inject.render`
MIN_ELLIPSE_NORM = 1e-6


def sersic_b_n(n: Any) -> Any:
    """Sersic b_n such that R_e encloses half the light: ``gammainc(2n, b_n) = 1/2``, exactly.

    Solved in float64 with the inverse regularised incomplete gamma function for numpy arrays
    (float64 result) or torch tensors (result in the tensor's dtype and device). No gradient flows
    through it: b_n is a per-source constant computed before any rendering kernel.
    """
    if isinstance(n, torch.Tensor):
        b = gammaincinv(2.0 * n.detach().to("cpu", torch.float64).numpy(), 0.5)
        return torch.as_tensor(b, dtype=n.dtype, device=n.device)
    return gammaincinv(2.0 * np.asarray(n, dtype=np.float64), 0.5)


def mag_to_nanomaggies(mag: Any) -> Any:
    """AB magnitude -> flux in nanomaggies (zero point 22.5)."""
    return 10 ** ((AB_ZERO_POINT - mag) / 2.5)


def band_fluxes(r_mag: Any, g_r: Any, r_z: Any) -> Any:
    """(N,) r magnitudes and g-r, r-z colours -> (N, 3) g, r, z fluxes in nanomaggies."""
    (r, gr, rz), _, to_np = prepare((r_mag, g_r, r_z), {})
    out = torch.stack([mag_to_nanomaggies(r + gr), mag_to_nanomaggies(r), mag_to_nanomaggies(r - rz)], dim=-1)
    return finish((out,), to_np)[0]


def check_sersic(r_e: Any, n: Any) -> None:
    """Refuse non-positive half-light radii or indices (clear message, before any rendering)."""
    r_e = torch.as_tensor(np.asarray(r_e) if not isinstance(r_e, torch.Tensor) else r_e)
    n = torch.as_tensor(np.asarray(n) if not isinstance(n, torch.Tensor) else n)
    require(bool((r_e > 0).all()), f"Sersic R_e must be > 0 arcsec; got min {float(r_e.min()):.4g}")
    require(bool((n > 0).all()), f"Sersic index n must be > 0; got min {float(n.min()):.4g}")


def _sersic(x, y, flux, r_e, n, e1, e2, cx, cy, b_n=None):
    check_sersic(r_e, n)
    return sersic_unchecked(x, y, flux, r_e, n, e1, e2, cx, cy, b_n)


def sersic_unchecked(x, y, flux, r_e, n, e1, e2, cx, cy, b_n=None):
    """Sersic surface brightness on batched tensors without validation (fused/compiled kernels)."""
    b = sersic_b_n(n) if b_n is None else b_n
    dx, dy = x - cx, y - cy
    norm = torch.sqrt((1 - e1 * e1 - e2 * e2).clamp_min(MIN_ELLIPSE_NORM))
    # lenstronomy's transform_e1e2_product_average: rotation + sqrt(q) stretch in one linear map
    xs = ((1 - e1) * dx - e2 * dy) / norm
    ys = (-e2 * dx + (1 + e1) * dy) / norm
    radius = torch.sqrt(xs * xs + ys * ys) / r_e
    log_norm = (math.log(2 * math.pi) + torch.log(n) + 2 * torch.log(r_e) + b - 2 * n * torch.log(b)
                + torch.lgamma(2 * n))
    amp = flux * torch.exp(-log_norm)
    return amp * torch.exp(-b * (radius.clamp_min(1e-12) ** (1 / n) - 1))


def sersic_surface_brightness(x, y, *, flux, r_e, n, e1, e2, center_x=0.0, center_y=0.0, b_n=None,
                              dtype=None):
    """Elliptical Sersic normalised to total ``flux`` (nanomaggies); returns nanomaggies/arcsec^2."""
    params = dict(flux=flux, r_e=r_e, n=n, e1=e1, e2=e2, cx=center_x, cy=center_y)
    if b_n is not None:
        params["b_n"] = b_n
    (tx, ty), p, to_np = prepare((x, y), params, dtype)
    out = _sersic(tx, ty, p["flux"], p["r_e"], p["n"], p["e1"], p["e2"], p["cx"], p["cy"], p.get("b_n"))
    return finish((out,), to_np)[0]


def clump_surface_brightness(x: torch.Tensor, y: torch.Tensor, clumps: torch.Tensor, *,
                             batch_axis: int = 0) -> torch.Tensor:
    """Sum of circular Gaussian clumps; ``clumps`` (N, K, 4) = (flux, x, y, sigma) per clump.

    ``x, y`` are source-plane coordinates with the N injections along ``batch_axis`` (default
    (N, ...)); zero-flux rows are padding.
    """
    shape = [1] * x.ndim
    shape[batch_axis] = -1
    total = torch.zeros_like(x)
    for k in range(clumps.shape[1]):
        flux, cx, cy, sigma = (clumps[:, k, j].reshape(shape) for j in range(4))
        r2 = (x - cx) ** 2 + (y - cy) ** 2
        half_chi2 = 0.5 * r2 / sigma**2
        # zero beyond e^-20 (6.3 sigma, < 1e-8 of the flux) rather than underflowing to slow
        # denormal floats (see dhs_inject.render)
        total = total + torch.where(half_chi2 < 20, flux / (2 * math.pi * sigma**2) * torch.exp(-half_chi2), 0.0)
    return total


def stamp_surface_brightness(x: torch.Tensor, y: torch.Tensor, stamps: torch.Tensor, *, stamp_scale: float,
                             center_x: torch.Tensor, center_y: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of pixel source stamps in the source plane, unit total flux.

    ``stamps`` (N, h, w) non-negative images with pixel size ``stamp_scale`` arcsec, centred on
    (center_x, center_y); ``x, y`` (N, H, W). Outside the stamp the source is dark.
    """
    require(bool((stamps.flatten(1).sum(1) > 0).all()), "every source stamp must have positive total flux")
    n, h, w = stamps.shape
    unit = stamps / (stamps.flatten(1).sum(1).reshape(n, 1, 1) * stamp_scale**2)
    gx = (x - center_x.reshape(n, 1, 1)) / (stamp_scale * w / 2)
    gy = (y - center_y.reshape(n, 1, 1)) / (stamp_scale * h / 2)
    grid = torch.stack([gx, gy], dim=-1).to(unit.dtype)
    out = torch.nn.functional.grid_sample(unit[:, None], grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out[:, 0]
