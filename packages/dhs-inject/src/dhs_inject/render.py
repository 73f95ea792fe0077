"""Ray-shooting renderer: supersampled image-plane grid -> source plane -> pixels -> PSF.

Pixel convention (as lenstronomy's ``PixelGrid`` with a diagonal pix2angle): array index
``[row, col]`` is at ``x = (col - (W-1)/2) * pixel_scale``, ``y = (row - (H-1)/2) * pixel_scale``
arcsec from the stamp centre. Each pixel is split into ``supersample^2`` sub-pixels at
``(i + 1/2) / s - 1/2`` of a pixel; their mean surface brightness times the pixel area is the
pixel flux. The deflection is computed once per injection and shared by the three bands; the
source morphology is shared too (one SED per source), so band images are flux x unit image.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import torch

from dhs_inject.lensing import MIN_F, ray_shoot
from dhs_inject.sources import MIN_ELLIPSE_NORM, clump_surface_brightness, sersic_b_n

__all__ = ["fast_kernel_failure", "lensed_unit_image", "sersic_unit_image", "subpixel_grid"]

_log = logging.getLogger(__name__)
# why the compiled kernel is unusable in this process (None: not tried yet, or it works); set once
_fast_kernel_failure: str | None = None

# natural-log floor of every exponential profile in the fused kernel (see _sersic_pipeline)
_LOG_FLOOR = 20.0

SourceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def subpixel_grid(n_pix: int, pixel_scale: float, supersample: int, dtype=torch.float32, device="cpu"):
    """(H*s, W*s) sub-pixel centre coordinates (x, y) in arcsec, stamp-centred."""
    s = supersample
    idx = (torch.arange(n_pix * s, dtype=torch.float64) + 0.5) / s - 0.5 - (n_pix - 1) / 2
    coord = (idx * pixel_scale).to(dtype=dtype, device=device)
    y, x = torch.meshgrid(coord, coord, indexing="ij")
    return x, y


def _subpixel_moments(sb: torch.Tensor, s: int) -> torch.Tensor:
    """(N, 5, H, W) sums of sub-pixel values x (u, v, u^2, u v, v^2) per pixel from an
    (N, H, s, W, s) sub-pixel array, (u, v) the sub-pixel offsets from the pixel centre in pixels."""
    off = (torch.arange(s, dtype=sb.dtype, device=sb.device) + 0.5) / s - 0.5
    u, v = off.reshape(1, 1, 1, 1, s), off.reshape(1, 1, s, 1, 1)
    return torch.stack([(sb * w).sum(dim=(2, 4)) for w in (u, v, u * u, u * v, v * v)], dim=1)


def lensed_unit_image(lens: dict[str, torch.Tensor], source_fn: SourceFn, *, n_pix: int, pixel_scale: float,
                      supersample: int = 3, moments: bool = False):
    """(N, H, W) lensed image in flux per pixel of a source with unit total flux.

    ``lens`` holds (N,) tensors theta_e, e1, e2, center_x, center_y, gamma1, gamma2;
    ``source_fn(beta_x, beta_y)`` returns the unit-flux surface brightness (per arcsec^2) at
    (N, H*s, W*s) source-plane positions. The sum of the result is the total magnification.
    A sub-pixel that falls exactly on the singular lens centre (no defined deflection, no area)
    is left out of its pixel's mean. With ``moments`` also returns the (N, 5, H, W) light moments
    of :func:`dhs_inject.psf.convolve_subpixel`.
    """
    ref = lens["theta_e"]
    x, y = subpixel_grid(n_pix, pixel_scale, supersample, ref.dtype, ref.device)
    batched = {k: v.reshape(-1, 1, 1) for k, v in lens.items()}
    bx, by = ray_shoot(x[None], y[None], batched)
    regular = ((x[None] - batched["center_x"]) ** 2 + (y[None] - batched["center_y"]) ** 2) > 0
    sb = torch.where(regular, source_fn(bx, by), 0.0)
    n = sb.shape[0]
    s = supersample
    shape = (n, n_pix, s, n_pix, s)
    count = regular.expand(sb.shape).reshape(shape).sum(dim=(2, 4)).clamp_min(1)
    scale = pixel_scale**2 * s * s / count  # mean over the regular sub-pixels, times the pixel area
    unit = sb.reshape(shape).sum(dim=(2, 4)) / (s * s) * scale
    if not moments:
        return unit
    return unit, _subpixel_moments(sb.reshape(shape), s) / (s * s) * scale[:, None]


def _lens_coefficients(lens: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per-lens constants of the SIE + shear deflection, hoisted out of the per-sub-pixel loop."""
    e1, e2 = lens["e1"], lens["e2"]
    c = torch.sqrt(e1 * e1 + e2 * e2)
    q = (1 - c) / (1 + c)
    phi = torch.atan2(e2, e1) / 2
    f = torch.sqrt((1 - q) * (1 + q)).clamp_min(MIN_F)  # the SIS limit, as in dhs_inject.lensing
    b_over_f = lens["theta_e"] * torch.sqrt(q) / f
    return [torch.cos(phi), torch.sin(phi), q * q, f, b_over_f, lens["center_x"], lens["center_y"],
            lens["gamma1"], lens["gamma2"]]


def _source_coefficients(src: dict[str, torch.Tensor], area: float = 1.0) -> list[torch.Tensor]:
    """Per-source constants of the Sersic profile: elliptical metric / R_e, b_n, 1/(2n), amplitude
    (times ``area``: the pixel area turns surface brightness into flux per pixel)."""
    e1, e2, r_e, n = src["e1"], src["e2"], src["r_e"], src["n"]
    norm = torch.sqrt((1 - e1 * e1 - e2 * e2).clamp_min(MIN_ELLIPSE_NORM)) * r_e
    b = src["b_n"] if "b_n" in src else sersic_b_n(n)
    log_norm = (math.log(2 * math.pi) + torch.log(n) + 2 * torch.log(r_e) + b - 2 * n * torch.log(b)
                + torch.lgamma(2 * n))
    amp = src["flux"] * torch.exp(-log_norm) * area
    # core radius^2 (units of R_e): the disc holding a fraction CORE_FLUX of the light,
    # P(2n, b r^(1/n)) = CORE_FLUX, from the small-argument form P(a, t) ~ t^a / Gamma(a + 1),
    # which over-estimates P and so under-estimates the radius (the safe side)
    t = torch.exp((math.log(CORE_FLUX) + torch.lgamma(2 * n + 1)) / (2 * n))
    core2 = torch.exp(2 * n * torch.log(t / b))
    return [(1 - e1) / norm, -e2 / norm, (1 + e1) / norm, b, 0.5 / n, amp, src["center_x"], src["center_y"],
            core2]


class _LensedSersic:
    """Per-pixel (or per-cell) terms of the lensed Sersic (+ clumps) that are linear in position,
    computed once; :meth:`sample` then evaluates one sub-pixel offset from them.

    Same maths as :mod:`dhs_inject.lensing` / :mod:`dhs_inject.sources`, arranged for speed:

    * everything linear in position is computed once per pixel and shifted by per-injection
      constants per sub-pixel: the lens-frame coordinates (xr, yr), and the source-frame
      coordinates of the undeflected ray (shear and the Sersic metric are linear maps);
    * the deflection enters the Sersic radius through one 2 x 2 map of (atan, atanh), which folds
      the rotation back from the lens frame, the Sersic metric and b/f.
    """

    def __init__(self, x, y, lens_c: list[torch.Tensor], src_c: list[torch.Tensor], clumps: torch.Tensor | None):
        self.x, self.y, self.lens_c, self.src_c, self.clumps = x, y, lens_c, src_c, clumps
        # two layouts: images, (1 or N, H, W) positions against (N, 1, 1) constants; refined cells,
        # (9, M) positions against (1, M) constants (the M cells along the vectorised last axis)
        self.batch_axis = 1 if x.ndim == 2 else 0
        cos_p, sin_p, q2, f, b_over_f, cx, cy, g1, g2 = lens_c
        dx, dy = x - cx, y - cy
        self.xr0, self.yr0 = cos_p * dx + sin_p * dy, cos_p * dy - sin_p * dx
        ux0, uy0 = self.unlensed(x, y)
        sx, sy = src_c[6], src_c[7]
        self.xs0, self.ys0 = self.source_frame(ux0 - sx, uy0 - sy)
        # source-frame image of a lens-frame deflection (axr, ayr): metric . rotation(phi) . b/f
        self.m11, self.m21 = self.source_frame(b_over_f * cos_p, b_over_f * sin_p)
        self.m12, self.m22 = self.source_frame(-b_over_f * sin_p, b_over_f * cos_p)

    def source_frame(self, ux, uy):  # Sersic metric (rotation + sqrt(q) stretch, / R_e)
        a11, a12, a22 = self.src_c[:3]
        return a11 * ux + a12 * uy, a12 * ux + a22 * uy

    def unlensed(self, px, py):  # beta of an undeflected ray: (1 - Gamma) theta, Gamma the shear matrix
        g1, g2 = self.lens_c[7], self.lens_c[8]
        return px - (g1 * px + g2 * py), py - (g2 * px - g1 * py)

    def sample(self, ox, oy):
        """(surface brightness x pixel area, source-frame xs, ys in units of R_e) at offset (ox, oy).

        The ray through the singular centre of the SIE has no defined deflection (its limit
        depends on the direction of approach); a single point carries no area, so that sample is
        set to zero and the caller averages over the remaining ones (see :func:`_centre_valid`).
        """
        cos_p, sin_p, q2, f, b_over_f = self.lens_c[:5]
        b_n, inv_2n, amp = self.src_c[3:6]
        xr = self.xr0 + (cos_p * ox + sin_p * oy)
        yr = self.yr0 + (cos_p * oy - sin_p * ox)
        psi2 = q2 * xr * xr + yr * yr
        # f / sqrt is cheaper than f * rsqrt in the vectorised loop (rsqrt is emulated)
        f_over_psi = f / torch.sqrt(psi2.clamp_min(1e-30))
        at, ath = torch.atan(f_over_psi * xr), torch.atanh(f_over_psi * yr)
        dxs, dys = self.source_frame(*self.unlensed(ox, oy))
        xs = self.xs0 + dxs - (self.m11 * at + self.m12 * ath)
        ys = self.ys0 + dys - (self.m21 * at + self.m22 * ath)
        r2 = (xs * xs + ys * ys).clamp_min(1e-24)
        log_profile = b_n - b_n * torch.exp(torch.log(r2) * inv_2n)
        # the far tail, below e^-20 ~ 2e-9 of the half-light intensity (beyond ~13 R_e for
        # n = 1, ~170 R_e for n = 4; < 1e-8 of the flux), is set to exactly zero: left alone
        # it underflows to denormal floats, and every later operation that meets one (the
        # sub-pixel sum, products in the PSF convolution) runs ~10x slower on x86
        sb = torch.where((log_profile > -_LOG_FLOOR) & (psi2 > 1e-30), amp * torch.exp(log_profile), 0.0)
        if self.clumps is not None:
            ax = b_over_f * (cos_p * at - sin_p * ath)
            ay = b_over_f * (sin_p * at + cos_p * ath)
            bx, by = self.unlensed(self.x + ox, self.y + oy)
            clump = clump_surface_brightness(bx - ax, by - ay, self.clumps, batch_axis=self.batch_axis)
            sb = sb + torch.where(psi2 > 1e-30, clump, 0.0)
        return sb, xs, ys, r2

    def centre_valid(self):
        """1 where the sample at the cell centre (offset 0) is a regular ray, 0 on the singular point."""
        q2 = self.lens_c[2]
        return torch.where(q2 * self.xr0 * self.xr0 + self.yr0 * self.yr0 > 1e-30, 1.0, 0.0)


def _sersic_pipeline(x, y, lens_c: list[torch.Tensor], src_c: list[torch.Tensor], clumps: torch.Tensor | None,
                     pixel_scale: float, supersample: int, moments: bool = False) -> torch.Tensor:
    """Mean sub-pixel surface brightness of the lensed Sersic (+ clumps) on the pixel grid (x, y).

    The s x s sub-pixel offsets are an unrolled loop of elementwise work on (N, H, W) (no
    supersampled temporary, no reduction axis: the compiled loop vectorises over pixels); the
    per-sample maths is :class:`_LensedSersic`. With odd s the central sub-pixel of a pixel can
    sit exactly on the lens centre; that sample is dropped and the pixel averages the others (with
    s = 1, odd stamps: that pixel is 0).
    With ``moments`` returns a (6, N, H, W) stack: the mean and the light moments of
    :func:`dhs_inject.psf.convolve_subpixel` (offsets in pixels).
    """
    field = _LensedSersic(x, y, lens_c, src_c, clumps)
    s = supersample
    units = [(i + 0.5) / s - 0.5 for i in range(s)]
    total = None
    mom = [None] * 5
    for v in units:
        for u in units:
            sb = field.sample(u * pixel_scale, v * pixel_scale)[0]
            total = sb if total is None else total + sb
            if moments:
                terms = (sb * u, sb * v, sb * (u * u), sb * (u * v), sb * (v * v))
                mom = [t if m is None else m + t for m, t in zip(mom, terms)]
    # with s = 1 the pixel on the lens centre has no regular sample left: it gets 0 (the central
    # image of an SIE is infinitely demagnified) rather than 0 / 0
    norm = (s * s - 1 + field.centre_valid()).clamp_min(1.0) if s % 2 else s * s
    if moments:
        return torch.stack([total / norm] + [m / norm for m in mom])
    return total / norm


#: aliasing guard of the adaptive refinement (:func:`_cell_pipeline`): a cell whose sample pattern
#: spans more than GUARD_SPACING (R_e) in the source frame and whose samples pass within
#: GUARD_RADIUS (R_e) plus that span of the source centre is refined
GUARD_SPACING = 0.5
GUARD_RADIUS = 3.0
#: flux fraction of the Sersic core the adaptive refinement resolves (see :func:`_cell_pipeline`)
CORE_FLUX = 1e-3


def _cell_pipeline(x, y, lens_c: list[torch.Tensor], src_c: list[torch.Tensor], clumps: torch.Tensor | None,
                   step: torch.Tensor, moments: bool) -> torch.Tensor:
    """Statistics of 3 x 3 samples per cell of side ``3 step`` centred on (x, y), for adaptive refinement.

    Returns a stack (over axis 1 for (N, H, W) images, axis 0 for (9, M) refined cells) of: the
    mean (surface brightness x pixel area); with ``moments`` the first and second moments (mean
    of sb x u, v, u^2, u v, v^2) of the offsets (u, v) in units of the cell side; and last the
    refinement indicator, which is the checkerboard difference |mean of the 5 "even" samples -
    mean of the 4 "odd" ones| (two interleaved estimates of the same cell integral: their
    difference measures how far the profile is from resolved), or +inf where the aliasing guard
    fires (the sample pattern spans more than ``GUARD_SPACING`` R_e in the source frame and passes
    within ``GUARD_RADIUS`` R_e plus that span of the source centre: the core may lie between the
    samples, with both estimates equally blind to it), or where the core rule fires (the samples
    pass within the pattern's extent of the source centre and that extent exceeds the radius
    holding ``CORE_FLUX`` of the light: the cusp is not yet resolved).

    The guard is decided here rather than returned as two more planes: with every statistic an
    output of its own, inductor splits the kernel into two loops that both shoot the rays.
    """
    field = _LensedSersic(x, y, lens_c, src_c, clumps)
    even = odd = None
    mx = my = mxx = mxy = myy = None
    r2_min = None
    corner = {}
    extent2 = None
    for j in range(3):
        for i in range(3):
            u, v = (i - 1) / 3, (j - 1) / 3
            sb, xs, ys, r2 = field.sample((i - 1) * step, (j - 1) * step)
            if (i + j) % 2 == 0:
                even = sb if even is None else even + sb
            else:
                odd = sb if odd is None else odd + sb
            r2_min = r2 if r2_min is None else torch.minimum(r2_min, r2)
            # source-frame extent^2 of the pattern: the longer diagonal, (0,0)-(2,2) or (2,0)-(0,2)
            if (i, j) in ((0, 0), (2, 0)):
                corner[i, j] = (xs, ys)
            elif (i, j) in ((0, 2), (2, 2)):
                ox, oy = corner[2 - i, 0]
                d2 = (xs - ox) ** 2 + (ys - oy) ** 2
                extent2 = d2 if extent2 is None else torch.maximum(extent2, d2)
            if moments and (i != 1 or j != 1):
                terms = (sb * u, sb * v, sb * (u * u), sb * (u * v), sb * (v * v))
                if mx is None:
                    mx, my, mxx, mxy, myy = terms
                else:
                    mx, my, mxx, mxy, myy = (a + b for a, b in zip((mx, my, mxx, mxy, myy), terms))
    valid = field.centre_valid()
    n_valid = 8 + valid
    mean = (even + odd) / n_valid
    diff = (even / (4 + valid) - odd / 4).abs()
    extent = torch.sqrt(extent2)
    core2 = field.src_c[8]
    guard = ((extent > GUARD_SPACING) & (r2_min < (GUARD_RADIUS + extent) ** 2)) | (
        (extent2 > core2) & (r2_min < extent2))
    out = [mean]
    if moments:
        out += [m / n_valid for m in (mx, my, mxx, mxy, myy)]
    out.append(torch.where(guard, math.inf, diff))
    # images (N, H, W): stacked as (N, S, H, W), so the flux and moment planes are already the
    # (N, 6, H, W) layout of the sub-pixel PSF convolution; refined cells (9, M): (S, 9, M)
    return torch.stack(out, dim=1 if field.batch_axis == 0 else 0)


@functools.cache
def _compiled(fn: Callable) -> Callable:
    # inductor fuses the whole per-pixel body (9 sub-pixels x ~40 elementwise ops) into one loop
    # vectorised along H*W. Compiled once per process: dynamic=True makes the batch size and stamp
    # size symbolic, so every later call (any N >= 2, any n_pix) reuses the same kernel instead of
    # recompiling per shape (~10-25 s each); the generated code is as fast as the static one.
    # The compiled artefact is also cached on disk by inductor, so worker processes load it.
    # By default inductor stores ("realizes") intermediates of long expressions to memory to avoid
    # recomputation; here nothing is recomputed, so the thresholds are raised to keep everything in
    # registers. Unsafe-math compiler flags (reassociation, no NaN/inf special cases) are ~15 %
    # faster and safe here: inputs are validated finite, every division/log/sqrt argument is
    # clamped away from zero, |atanh argument| <= f < 1, and the result is checked against
    # lenstronomy in the tests.
    # Fused multiply-adds (fp-contract, off by default in inductor) are another ~3 %.
    options = {"realize_opcount_threshold": 10_000, "realize_reads_threshold": 1_000,
               "realize_acc_reads_threshold": 1_000, "cpp.enable_unsafe_math_opt_flag": True,
               "cpp.enable_floating_point_contract_flag": "fast"}
    return torch.compile(fn, dynamic=True, options=options)


def fast_kernel_failure() -> str | None:
    """Why the compiled kernel fell back to the eager path in this process (None if it did not)."""
    return _fast_kernel_failure


def _run_pipeline(args: tuple, compile: bool, fn: Callable = _sersic_pipeline) -> torch.Tensor:
    """Run a fused kernel (``fn``) compiled when asked and possible, else eagerly (same maths).

    torch.compile needs a working C++ compiler (CPU) or triton (CUDA); when compilation or the
    compiled call fails, the reason is logged once and the process keeps using the eager path.
    """
    global _fast_kernel_failure
    if compile and _fast_kernel_failure is None:
        try:
            return _compiled(fn)(*args)
        except Exception as exc:  # any compiler/toolchain failure: fall back, never fail the run
            first_line = (str(exc).strip().splitlines() or [""])[0]
            _fast_kernel_failure = f"{type(exc).__name__}: {first_line}"
            _log.warning("torch.compile of the fused ray-shooting kernel failed (%s); rendering with the "
                         "eager path (same results, several times slower)", _fast_kernel_failure)
    return fn(*args)


def sersic_coefficients(lens: dict[str, torch.Tensor], src: dict[str, torch.Tensor],
                        clumps: torch.Tensor | None, pixel_scale: float):
    """(lens constants, source constants, clumps) of the fused kernels, each (N,) / (N, K, 4);
    source amplitudes and clump fluxes are scaled to flux per pixel area."""
    lens_c = _lens_coefficients(lens)
    src_c = _source_coefficients(src, area=pixel_scale**2)
    if clumps is not None:
        clumps = clumps.to(lens["theta_e"].dtype).clone()
        clumps[..., 0] *= pixel_scale**2  # clump fluxes: the same per-pixel scaling
    return lens_c, src_c, clumps


def sersic_unit_image(lens: dict[str, torch.Tensor], src: dict[str, torch.Tensor],
                      clumps: torch.Tensor | None = None, *, n_pix: int, pixel_scale: float,
                      supersample: int = 3, compile: bool = False, moments: bool = False) -> torch.Tensor:
    """(N, H, W) lensed Sersic (+ clumps) image, flux per pixel, for a unit-flux source.

    ``src`` holds (N,) tensors flux (flux fraction of the smooth Sersic, 1 without clumps), r_e,
    n, e1, e2, center_x, center_y, and optionally b_n (default: the exact half-light value,
    :func:`dhs_inject.sources.sersic_b_n`); ``clumps`` (N, K, 4) absolute (flux, x, y, sigma).
    ``compile=True`` runs the same function through ``torch.compile`` (the first call in a process
    compiles; if compilation is impossible the eager path is used, see :func:`fast_kernel_failure`).
    """
    ref = lens["theta_e"]
    centre = subpixel_grid(n_pix, pixel_scale, 1, ref.dtype, ref.device)[0][0]
    lens_c, src_c, clumps = sersic_coefficients(lens, src, clumps, pixel_scale)
    lens_c = [v.reshape(-1, 1, 1) for v in lens_c]
    src_c = [v.reshape(-1, 1, 1) for v in src_c]
    n = ref.shape[0]
    if compile and n == 1:  # a batch of one would specialise (recompile) the dynamic-shape kernel
        lens_c = [v.repeat(2, 1, 1) for v in lens_c]
        src_c = [v.repeat(2, 1, 1) for v in src_c]
        clumps = clumps.repeat(2, 1, 1) if clumps is not None else None
    # full (1, H, W) coordinate planes (not broadcast rows/columns): the compiled loop then runs
    # over H*W contiguous elements, so only one partial vector per image instead of one per row
    y, x = torch.meshgrid(centre, centre, indexing="ij")
    args = (x[None].contiguous(), y[None].contiguous(), lens_c, src_c, clumps, pixel_scale, supersample)
    if moments:  # (6, N, H, W): mean, then the light moments (see _sersic_pipeline)
        return _run_pipeline((*args, True), compile)[:, :n]
    return _run_pipeline(args, compile)[:n]
