"""Unit-flux surface-brightness templates of the synthetic survey, batched on the first axis.

Every function returns an ``(N, H, W)`` float32 array sampled at pixel centres whose sum over an
unbounded pixel grid is 1 (a template is multiplied by a band flux in nanomaggies later), so a
galaxy whose wings leave the stamp loses that light, as a real cutout does. Coordinates are in
arcsec relative to the stamp centre; every parameter is an ``(N,)`` array.

Sersic profiles are what Tractor fits in DR10 (``REX``/``EXP`` n=1, ``DEV`` n=4, ``SER`` free n).
Sampling a cuspy Sersic at pixel centres over-counts the central pixel (for n=4, Re=0.3" by ~70x),
so the radius is softened by 0.5 px (which makes the pixel sum nearly independent of the sub-pixel
centre) and the remaining sampling bias is divided out with a table of discrete-sum /
analytic-total, averaged over sub-pixel centres, computed once (see :func:`_sampling_bias`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import gamma, gammaincc

from dhs_inject.sources import sersic_b_n

#: DR10 pixel scale, arcsec per pixel
PIXEL_SCALE = 0.262
# radius softening in pixels that tames the cusp of high-n profiles
_SOFTEN_PX = 0.5
_BIAS_N = np.array([0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0])
_BIAS_RE_PX = np.geomspace(0.5, 40.0, 16)


def stamp_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in arcsec of a ``size``-pixel stamp.

    The stamp centre is at index (size-1)/2, the convention of :mod:`dhs_inject.render`, so an
    injection centred at (0, 0) lands on a synthetic host's centre.
    """
    offs = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * np.float32(PIXEL_SCALE)
    return offs[None, :].repeat(size, 0), offs[:, None].repeat(size, 1)


def _sersic_total(n: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Analytic total of exp(-b((r/Re)^(1/n) - 1)) over the plane, per unit Re^2 and axis ratio."""
    return 2.0 * np.pi * n * np.exp(b) * gamma(2.0 * n) / b ** (2.0 * n)


@lru_cache(maxsize=1)
def _sampling_bias() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Table of (sum of softened pixel-centre samples) / (analytic total), over n and Re in pixels."""
    table = np.empty((_BIAS_N.size, _BIAS_RE_PX.size))
    for i, n in enumerate(_BIAS_N):
        b = float(sersic_b_n(n))
        for j, re_px in enumerate(_BIAS_RE_PX):
            # pixels inside r_cut are summed; the light beyond it is smooth on the pixel scale
            # and is added analytically (upper incomplete gamma)
            r_cut = 8.0 * re_px + 20.0
            c = np.arange(-int(r_cut) - 1, int(r_cut) + 2, dtype=np.float64)
            total = re_px**2 * _sersic_total(n, b)
            tail = gammaincc(2.0 * n, b * (r_cut / re_px) ** (1.0 / n))
            sums = []
            for off in (0.0, 0.25, 0.5):
                r = np.sqrt((c[None, :] - off) ** 2 + (c[:, None] - 0.6 * off) ** 2 + _SOFTEN_PX**2)
                inside = r < r_cut
                sums.append(np.exp(-b * ((r[inside] / re_px) ** (1.0 / n) - 1.0)).sum())
            table[i, j] = np.mean(sums) / total + tail
    return _BIAS_N, _BIAS_RE_PX, table


def _bias(n: np.ndarray, re_px: np.ndarray) -> np.ndarray:
    ns, res, table = _sampling_bias()
    fn = np.interp(n, ns, np.arange(ns.size))
    fr = np.interp(np.log(re_px), np.log(res), np.arange(res.size))
    i0 = np.clip(np.floor(fn).astype(int), 0, ns.size - 2)
    j0 = np.clip(np.floor(fr).astype(int), 0, res.size - 2)
    di, dj = fn - i0, fr - j0
    return ((1 - di) * (1 - dj) * table[i0, j0] + di * (1 - dj) * table[i0 + 1, j0]
            + (1 - di) * dj * table[i0, j0 + 1] + di * dj * table[i0 + 1, j0 + 1])


def _col(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)[:, None, None]


def elliptical_radius2(x, y, *, center_x, center_y, q, phi) -> np.ndarray:
    """Squared elliptical radius sqrt(q x'^2 + y'^2/q)^2 (circularised, lenstronomy-like) in arcsec^2."""
    dx, dy = x[None] - _col(center_x), y[None] - _col(center_y)
    c, s = _col(np.cos(phi)), _col(np.sin(phi))
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    qq = _col(q)
    return qq * xr * xr + yr * yr / qq


def sersic(x, y, *, r_e, n, q, phi, center_x, center_y) -> np.ndarray:
    """Unit-flux elliptical Sersic templates; ``r_e`` is the circularised half-light radius (arcsec)."""
    n = np.asarray(n, dtype=np.float64)
    r_e = np.asarray(r_e, dtype=np.float64)
    b = sersic_b_n(n)
    # In the area-preserving stretched frame of the ellipse the pixel pitch is 1/sqrt(q) along the
    # minor axis; softening and the bias table are both expressed in that coarsest pitch.
    q = np.asarray(q, dtype=np.float64)
    soft2 = (_SOFTEN_PX * PIXEL_SCALE) ** 2 / q
    r2 = elliptical_radius2(x, y, center_x=center_x, center_y=center_y, q=q, phi=phi) + _col(soft2)
    ratio2 = r2 / _col(r_e**2)
    img = np.exp(_col(-b) * (ratio2 ** _col(0.5 / n) - np.float32(1.0)))
    re_px = r_e / PIXEL_SCALE
    minor_px = re_px * np.sqrt(q)
    norm = re_px**2 * _sersic_total(n, b) * _bias(n, minor_px)
    return img * _col(1.0 / norm)


def gaussian(x, y, *, sigma, center_x, center_y, q=None, phi=None) -> np.ndarray:
    """Unit-flux (elliptical) Gaussians; ``sigma`` circularised, arcsec."""
    sigma = np.asarray(sigma, dtype=np.float64)
    q = np.ones_like(sigma) if q is None else q
    phi = np.zeros_like(sigma) if phi is None else phi
    r2 = elliptical_radius2(x, y, center_x=center_x, center_y=center_y, q=q, phi=phi)
    # a Gaussian narrower than a pixel still integrates to ~1 when its variance gets the pixel's
    var_px = (sigma / PIXEL_SCALE) ** 2 + 1.0 / 12.0
    img = np.exp(r2 * _col(-0.5 / (var_px * PIXEL_SCALE**2)))
    return img * _col(1.0 / (2.0 * np.pi * var_px))


def normalise(img: np.ndarray) -> np.ndarray:
    """Scale each template to unit sum over the stamp (for features built to lie inside it)."""
    s = img.sum(axis=(-2, -1))
    return img * (1.0 / np.maximum(s, 1e-30)).astype(np.float32)[:, None, None]


def ring(x, y, *, radius, width, q, phi, center_x, center_y, asymmetry, asym_phi) -> np.ndarray:
    """Unit-flux elliptical rings (collisional / resonance rings), brighter on one side by ``asymmetry``."""
    r = np.sqrt(elliptical_radius2(x, y, center_x=center_x, center_y=center_y, q=q, phi=phi))
    img = np.exp(-0.5 * ((r - _col(radius)) / _col(width)) ** 2)
    ang = np.arctan2(y[None] - _col(center_y), x[None] - _col(center_x))
    img *= 1.0 + _col(asymmetry) * np.cos(ang - _col(asym_phi))
    return normalise(img)


def spiral_arms(x, y, *, r_e, q, phi, pitch, n_arms, arm_phase, center_x, center_y) -> np.ndarray:
    """Unit-flux logarithmic-spiral arm patterns riding on an exponential disk of half-light ``r_e``.

    Arms follow ``theta = ln(r)/tan(pitch) + phase`` in the disk plane; the disk light is modulated
    by cos^4 of the arm phase, so arms are narrow (about a sixth of the inter-arm spacing
    2 pi r tan(pitch) / n_arms) and inter-arm regions dark. The arm light is weighted by r times the
    exponential disk, so it peaks near the disk scale length and lies mostly at 1-4" where the arm
    spacing (2-5") is resolved under a 1.3" PSF; it is suppressed inside 0.35 R_e (the bulge).
    """
    dx, dy = x[None] - _col(center_x), y[None] - _col(center_y)
    c, s = _col(np.cos(phi)), _col(np.sin(phi))
    xr, yr = c * dx + s * dy, (-s * dx + c * dy) / _col(q)
    r = np.sqrt(xr * xr + yr * yr) + np.float32(1e-3)
    theta = np.arctan2(yr, xr)
    wave = np.cos(_col(n_arms) * (theta - np.log(r) / _col(np.tan(pitch)) - _col(arm_phase)))
    h = _col(r_e) / np.float32(1.678)
    disk = (r / h) * np.exp(-r / h)
    inner = 1.0 - np.exp(-((r / (0.35 * _col(r_e))) ** 2))  # arms start outside the bulge
    return normalise(disk * inner * np.clip(wave, 0, None) ** 4)


def curved_streams(x, y, *, radius, width, start, span, center_x, center_y) -> np.ndarray:
    """Unit-flux circular-arc streams (tidal tails) fading and widening along their length.

    A stream is the part of a circle of ``radius`` about (center_x, center_y) from angle ``start``
    through ``span`` radians (negative: clockwise), Gaussian in cross-section with ``width`` arcsec
    at its root, twice that at its tip, and 40 % of the root's brightness at the tip, as tidal
    debris spreads and thins with distance from its galaxy.
    """
    dx, dy = x[None] - _col(center_x), y[None] - _col(center_y)
    r = np.sqrt(dx * dx + dy * dy)
    turn = np.arctan2(dy, dx) - _col(start)
    turn = np.where(_col(span) < 0, -turn, turn)
    along = np.mod(turn, 2 * np.pi) / _col(np.abs(span) + 1e-6)
    inside = along <= 1.0
    f = np.clip(along, 0.0, 1.0)
    w = _col(width) * (1.0 + f)
    img = np.where(inside, np.exp(-0.5 * ((r - _col(radius)) / w) ** 2) * (1.0 - 0.6 * f) / (1.0 + f), 0.0)
    return normalise(img.astype(np.float32))
