"""Deflection, convergence and magnification of SIE + external shear, batched in torch.

Conventions are lenstronomy's (``LensModel/Profiles/sie.py``, ``nie.py``, ``shear.py``):

* ``theta_e`` is the product-averaged ("circularised") Einstein radius in arcsec; in the frame of
  the major axis the convergence is ``kappa = theta_e / (2 sqrt(q x^2 + y^2 / q))``.
* ``e1 = (1-q)/(1+q) cos 2phi``, ``e2 = (1-q)/(1+q) sin 2phi`` (:func:`phi_q_to_e1e2`), phi the
  position angle of the major axis counted from +x towards +y.
* External shear: ``alpha = (gamma1 x + gamma2 y, gamma2 x - gamma1 y)`` about the origin.

The SIE deflection is the closed form of Kormann, Schneider & Bartelmann (1994) / Keeton & Kochanek
(1998) with zero core: in the major-axis frame, with ``b = theta_e sqrt(q)``, ``f = sqrt(1-q^2)`` and
``psi = sqrt(q^2 x^2 + y^2)``, ``alpha_x = b/f atan(f x/psi)``, ``alpha_y = b/f atanh(f y/psi)``.
As q -> 1 the SIS limit ``theta_e x/|x|`` is reached continuously (f is floored at :data:`MIN_F`).
The Hessian is analytic (lenstronomy differentiates numerically).

All public functions take numpy or torch (numpy in -> numpy out); coordinates are batched on the
first axis and parameters are scalars or (N,) arrays (see :mod:`dhs_inject._arrays`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dhs_inject._arrays import finish, prepare
from dhs_inject.errors import require

__all__ = [
    "MIN_F",
    "convergence",
    "e1e2_to_phi_q",
    "hessian",
    "magnification",
    "phi_q_to_e1e2",
    "shear_deflection",
    "sie_deflection",
]

#: floor of f = sqrt(1 - q^2): keeps atan(f u)/f finite at q = 1 (lenstronomy clamps q to 1 - 1e-8);
#: every SIE deflection in dhs (also the fused kernel of :mod:`dhs_inject.render`) uses it
MIN_F = 1e-4


def phi_q_to_e1e2(phi: Any, q: Any) -> tuple[Any, Any]:
    """Position angle (radians) and axis ratio (minor/major, in (0, 1]) -> lenstronomy e1, e2."""
    q_arr = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=float)
    require(
        bool(np.all((q_arr > 0) & (q_arr <= 1))),
        f"axis ratio q must be in (0, 1]; got min {q_arr.min():.4g}, max {q_arr.max():.4g}",
    )
    if isinstance(q, torch.Tensor) or isinstance(phi, torch.Tensor):
        q_t, phi_t = torch.as_tensor(q), torch.as_tensor(phi)
        modulus = (1.0 - q_t) / (1.0 + q_t)
        return modulus * torch.cos(2 * phi_t), modulus * torch.sin(2 * phi_t)
    modulus = (1.0 - q_arr) / (1.0 + q_arr)
    return modulus * np.cos(2 * np.asarray(phi)), modulus * np.sin(2 * np.asarray(phi))


def e1e2_to_phi_q(e1: Any, e2: Any) -> tuple[Any, Any]:
    """Inverse of :func:`phi_q_to_e1e2` (lenstronomy's ``ellipticity2phi_q``)."""
    lib = torch if isinstance(e1, torch.Tensor) else np
    phi = lib.arctan2(e2, e1) / 2
    c = lib.sqrt(e1 * e1 + e2 * e2)
    if lib is np:
        c = np.minimum(c, 0.9999)
    else:
        c = c.clamp(max=0.9999)
    return phi, (1 - c) / (1 + c)


def _ellipse(e1: torch.Tensor, e2: torch.Tensor):
    """Axis ratio and cos/sin of the position angle from (e1, e2), as tensors."""
    c = torch.sqrt(e1 * e1 + e2 * e2)
    require(bool((c < 1).all()), "ellipticity |e| = sqrt(e1^2 + e2^2) must be < 1 (q > 0)")
    q = (1 - c) / (1 + c)
    phi = torch.atan2(e2, e1) / 2
    return q, torch.cos(phi), torch.sin(phi)


def _check_theta_e(theta_e: torch.Tensor) -> None:
    require(bool((theta_e > 0).all()), f"theta_e must be > 0 arcsec; got min {float(theta_e.min()):.4g}")


def _sie_frame(x, y, theta_e, e1, e2, center_x, center_y):
    c = torch.sqrt(e1 * e1 + e2 * e2)
    q = (1 - c) / (1 + c)
    phi = torch.atan2(e2, e1) / 2
    cos_p, sin_p = torch.cos(phi), torch.sin(phi)
    dx, dy = x - center_x, y - center_y
    # rotate into the major-axis frame (lenstronomy util.rotate with +phi)
    xr = cos_p * dx + sin_p * dy
    yr = -sin_p * dx + cos_p * dy
    tiny = torch.finfo(x.dtype).tiny ** 0.5
    psi = torch.sqrt(q * q * xr * xr + yr * yr).clamp_min(tiny)
    b = theta_e * torch.sqrt(q)
    # f -> 0 is the SIS limit; the floor changes the deflection by ~f^2/3 ~ 3e-9 relative
    f = torch.sqrt((1 - q) * (1 + q)).clamp_min(MIN_F)
    return q, cos_p, sin_p, xr, yr, psi, b, f


def _sie_alpha(x, y, theta_e, e1, e2, center_x, center_y):
    _check_theta_e(theta_e)
    _ellipse(e1, e2)
    return sie_alpha_unchecked(x, y, theta_e, e1, e2, center_x, center_y)


def sie_alpha_unchecked(x, y, theta_e, e1, e2, center_x, center_y):
    """SIE deflection on batched tensors without parameter validation (for fused/compiled kernels)."""
    q, cos_p, sin_p, xr, yr, psi, b, f = _sie_frame(x, y, theta_e, e1, e2, center_x, center_y)
    ax_r = b / f * torch.atan(f * xr / psi)
    ay_r = b / f * torch.atanh(f * yr / psi)
    return cos_p * ax_r - sin_p * ay_r, sin_p * ax_r + cos_p * ay_r


def sie_deflection(x, y, *, theta_e, e1, e2, center_x=0.0, center_y=0.0, dtype=None):
    """Deflection (alpha_x, alpha_y) in arcsec of a singular isothermal ellipsoid.

    lenstronomy ``SIE`` conventions (theta_e product-averaged, e1/e2 from phi, q). ``dtype``
    selects float32 (default for float32/Python inputs) or float64.
    """
    (tx, ty), p, to_np = prepare((x, y), dict(theta_e=theta_e, e1=e1, e2=e2, cx=center_x, cy=center_y), dtype)
    out = _sie_alpha(tx, ty, p["theta_e"], p["e1"], p["e2"], p["cx"], p["cy"])
    return finish(out, to_np)


def shear_deflection(x, y, *, gamma1, gamma2, dtype=None):
    """Deflection of an external shear about the origin (lenstronomy ``SHEAR`` with ra_0 = dec_0 = 0)."""
    (tx, ty), p, to_np = prepare((x, y), dict(g1=gamma1, g2=gamma2), dtype)
    return finish((p["g1"] * tx + p["g2"] * ty, p["g2"] * tx - p["g1"] * ty), to_np)


def _sie_hessian(x, y, theta_e, e1, e2, center_x, center_y):
    _check_theta_e(theta_e)
    _ellipse(e1, e2)
    q, cos_p, sin_p, xr, yr, psi, b, f = _sie_frame(x, y, theta_e, e1, e2, center_x, center_y)
    # analytic second derivatives in the major-axis frame: f_xx = b y^2/(psi r^2) etc.
    r2 = (xr * xr + yr * yr).clamp_min(torch.finfo(x.dtype).tiny ** 0.5)
    norm = b / (psi * r2)
    fxx, fyy, fxy = norm * yr * yr, norm * xr * xr, -norm * xr * yr
    kappa = 0.5 * (fxx + fyy)
    g1r, g2r = 0.5 * (fxx - fyy), fxy
    cos2, sin2 = cos_p * cos_p - sin_p * sin_p, 2 * sin_p * cos_p
    g1 = cos2 * g1r - sin2 * g2r
    g2 = sin2 * g1r + cos2 * g2r
    return kappa + g1, g2, kappa - g1


def hessian(x, y, *, theta_e, e1, e2, center_x=0.0, center_y=0.0, gamma1=0.0, gamma2=0.0, dtype=None):
    """Second derivatives (f_xx, f_xy, f_yy) of the SIE + external shear lens potential."""
    params = dict(theta_e=theta_e, e1=e1, e2=e2, cx=center_x, cy=center_y, g1=gamma1, g2=gamma2)
    (tx, ty), p, to_np = prepare((x, y), params, dtype)
    fxx, fxy, fyy = _sie_hessian(tx, ty, p["theta_e"], p["e1"], p["e2"], p["cx"], p["cy"])
    return finish((fxx + p["g1"], fxy + p["g2"], fyy - p["g1"]), to_np)


def convergence(x, y, *, theta_e, e1, e2, center_x=0.0, center_y=0.0, dtype=None):
    """Convergence kappa of the SIE (external shear adds none)."""
    fxx, _, fyy = hessian(x, y, theta_e=theta_e, e1=e1, e2=e2, center_x=center_x, center_y=center_y,
                          dtype=dtype)
    return 0.5 * (fxx + fyy)


def magnification(x, y, *, theta_e, e1, e2, center_x=0.0, center_y=0.0, gamma1=0.0, gamma2=0.0, dtype=None):
    """Signed point magnification 1/det(A), A = 1 - Hessian, of SIE + external shear."""
    fxx, fxy, fyy = hessian(x, y, theta_e=theta_e, e1=e1, e2=e2, center_x=center_x, center_y=center_y,
                            gamma1=gamma1, gamma2=gamma2, dtype=dtype)
    return 1.0 / ((1 - fxx) * (1 - fyy) - fxy * fxy)


def ray_shoot(x: torch.Tensor, y: torch.Tensor, lens: dict[str, torch.Tensor]):
    """Source-plane positions beta = theta - alpha of SIE + shear, batched tensors, no validation."""
    ax, ay = sie_alpha_unchecked(x, y, lens["theta_e"], lens["e1"], lens["e2"], lens["center_x"], lens["center_y"])
    g1, g2 = lens["gamma1"], lens["gamma2"]
    return x - ax - (g1 * x + g2 * y), y - ay - (g2 * x - g1 * y)
