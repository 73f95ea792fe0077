"""Adaptive supersampling of the lensed Sersic (+ clumps) image: refine only the cells that need it.

Why: with a fixed 3 x 3 sub-pixel grid, compact and cuspy sources (R_e ~ 0.05", n ~ 4) are not
converged: the samples of a pixel either miss the bright core of the source (the demagnified
counter-image near the lens centre maps one pixel onto a source-plane region many R_e across) or
hit it and overweight it. Total arc fluxes then err by tens of per cent (docs/inject.md).

Method (a nested 3-adic quadrature; docs/inject.md, "Adaptive supersampling"):

1. Every pixel is sampled on a 3 x 3 grid by the fused kernel (:func:`dhs_inject.render._cell_pipeline`),
   which also returns two error indicators per cell, at no extra ray cost:

   * the checkerboard difference: the 5 "even" and the 4 "odd" samples are two interleaved
     estimates of the same cell integral; where they disagree the profile is not resolved
     (steep inner profile, cusp, caustic crossings);
   * the aliasing guard: the smallest source-plane radius reached by the samples and the
     source-plane extent of the sample pattern, both in units of R_e. A cell whose samples are
     spread over more than ``GUARD_SPACING`` R_e and pass within ``GUARD_RADIUS`` R_e + that extent of
     the source centre may contain the core between its samples, with both estimates equally
     blind to it, so it is refined whatever the difference says;
   * the core rule: a Sersic profile of index n ~ 4 is a cusp, with ~1 % of its light within
     0.02 R_e of the centre. A point sample that lands near it is over-weighted by orders of
     magnitude and one that misses it under-weights a whole cell, while the two checkerboard
     estimates can agree by chance. So a cell whose samples pass within the pattern's own extent
     of the source centre is refined until that extent falls below the radius that holds
     ``CORE_FLUX`` (1e-3) of the source's light: a few cells per image and level, down to
     ``max_supersample``.

2. A cell is refined when its estimated flux error (cell area x difference) exceeds
   ``CELL_TOLERANCE`` x tolerance of the injection's total flux, or when the guard fires: it is
   split into 3 x 3 children, each sampled 3 x 3 by the same kernel on the gathered cells only,
   and its contribution to its pixel is replaced by theirs. This repeats until the sub-pixel
   spacing reaches ``pixel_scale / max_supersample``.

The pixels that need nothing beyond the first pass cost exactly the fused 3 x 3 kernel; refined
cells cost 9 more rays per child. Nested levels (3, 9, 27, ...) reuse every earlier ray's cell.
The per-pixel first and second moments of the light about the pixel centre are carried along
for the sub-pixel PSF convolution (:func:`dhs_inject.psf.convolve_subpixel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dhs_inject.render import (
    CORE_FLUX,
    GUARD_RADIUS,
    GUARD_SPACING,
    _cell_pipeline,
    _run_pipeline,
    sersic_coefficients,
    subpixel_grid,
)

__all__ = ["AdaptiveImage", "CELL_TOLERANCE", "CORE_FLUX", "GUARD_RADIUS", "GUARD_SPACING", "adaptive_sersic_unit_image",
           "check_max_supersample"]

#: a cell is refined when (cell area x checkerboard difference) exceeds this x tolerance x total flux
CELL_TOLERANCE = 0.01


@dataclass
class AdaptiveImage:
    """``unit`` (N, H, W) flux per pixel of a unit-flux source; ``moments`` (N, 5, H, W) or None:
    sums over the pixel of flux x (u, v, u^2, u v, v^2), (u, v) offsets from the pixel centre in
    pixels; ``planes`` (N, 1 or 6, H, W), whose views both are (flux first, the layout
    :func:`dhs_inject.psf.convolve_subpixel` takes); ``refined`` (N, H, W) bool, pixels refined at
    least once; ``n_rays`` rays shot."""

    unit: torch.Tensor
    moments: torch.Tensor | None
    planes: torch.Tensor
    refined: torch.Tensor
    n_rays: int


def check_max_supersample(max_supersample: int) -> int:
    """Number of refinement levels for ``max_supersample`` = 3^k (k >= 1)."""
    levels, s = 0, 3
    while s < max_supersample:
        s *= 3
        levels += 1
    if s != max_supersample:
        raise ValueError(f"max_supersample must be a power of 3 (3, 9, 27, 81, ...); got {max_supersample}")
    return levels


def _refine_mask(indicator: torch.Tensor, area: float, flux_tol: torch.Tensor) -> torch.Tensor:
    """Cells to refine: estimated flux error (area x checkerboard difference) above the
    per-injection budget, or the aliasing guard (an infinite indicator, see _cell_pipeline)."""
    return area * indicator > flux_tol


def _pixel_moments(mean, sx, sy, sxx, sxy, syy, u, v, h):
    """A cell's contribution to its pixel's (flux, u, v, u^2, u v, v^2) sums, from its own
    moments in units of its side ``h`` (pixels) about its centre (u, v) (pixels)."""
    mu, mv = u * mean + h * sx, v * mean + h * sy
    muu = u * u * mean + 2 * u * h * sx + h * h * sxx
    muv = u * v * mean + h * (u * sy + v * sx) + h * h * sxy
    mvv = v * v * mean + 2 * v * h * sy + h * h * syy
    return torch.stack([mu, mv, muu, muv, mvv])


def adaptive_sersic_unit_image(lens: dict[str, torch.Tensor], src: dict[str, torch.Tensor],
                               clumps: torch.Tensor | None = None, *, n_pix: int, pixel_scale: float,
                               max_supersample: int = 729, tolerance: float = 0.01, compile: bool = False,
                               moments: bool = False) -> AdaptiveImage:
    """Adaptively supersampled (N, H, W) lensed Sersic (+ clumps) image of a unit-flux source.

    Same inputs as :func:`dhs_inject.render.sersic_unit_image`. ``tolerance`` is the target
    accuracy relative to the converged image (total flux, and each PSF-convolved pixel relative
    to the peak); ``max_supersample`` (3, 9, 27, 81, ...) bounds the finest sub-pixel spacing.
    """
    levels = check_max_supersample(max_supersample)
    ref = lens["theta_e"]
    dtype, device = ref.dtype, ref.device
    n = ref.shape[0]
    lens_c, src_c, clumps = sersic_coefficients(lens, src, clumps, pixel_scale)
    pad = compile and n == 1  # a batch of one would specialise (recompile) the dynamic-shape kernel
    rows = [v.repeat(2) if pad else v for v in lens_c], [v.repeat(2) if pad else v for v in src_c]
    clumps_b = clumps.repeat(2, 1, 1) if (pad and clumps is not None) else clumps
    centre = subpixel_grid(n_pix, pixel_scale, 1, dtype, device)[0][0]
    y, x = torch.meshgrid(centre, centre, indexing="ij")
    step = torch.tensor(pixel_scale / 3, dtype=dtype, device=device)
    args = (x[None].contiguous(), y[None].contiguous(), [v.reshape(-1, 1, 1) for v in rows[0]],
            [v.reshape(-1, 1, 1) for v in rows[1]], clumps_b, step, moments)
    # (N, P + 1, H, W): the flux, its moments (P = 6 planes with moments, else 1), the indicator
    stats = _run_pipeline(args, compile, _cell_pipeline)[:n]
    # one (N, P, H, W) buffer: the flux, then with ``moments`` its five moments (P = 6), laid
    # out as the sub-pixel PSF convolution reads them (no copy into a stacked array later)
    planes = stats[:, :-1]
    n_planes = stats.shape[1]  # the flat layout below indexes the whole (N, P + 1, H, W) buffer
    unit = planes[:, 0]
    n_rays = 9 * unit.numel()
    refined = torch.zeros_like(unit, dtype=torch.bool)
    flux_tol = (CELL_TOLERANCE * tolerance * unit.sum(dim=(-2, -1)).abs()).reshape(-1, 1, 1)
    need = _refine_mask(stats[:, -1], 1.0, flux_tol)
    hw = n_pix * n_pix
    # the refined cells, flattened: injection, pixel index, centre (arcsec), offset from the
    # pixel centre (pixels), and the statistics they were last evaluated with
    b_idx, row, col = torch.nonzero(need, as_tuple=True)
    pix = row * n_pix + col
    cx, cy = x[row, col], y[row, col]
    cu = torch.zeros_like(cx)
    cv = torch.zeros_like(cx)
    parent = stats[b_idx, :, row, col].T  # (P + 1, M), as the refined cells' statistics below
    # the kernel constants of every injection as one (N, C) table: a refined cell gathers its
    # injection's row once, and its 3 x 3 children broadcast it (a (1, M) row against (9, M))
    table = torch.stack([*lens_c, *src_c], dim=1)
    n_lens = len(lens_c)
    child_off = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device)
    oj, oi = torch.meshgrid(child_off, child_off, indexing="ij")
    oi, oj = oi.reshape(9, 1), oj.reshape(9, 1)
    flat = stats.view(-1)
    mom_plane = torch.arange(1, 6, device=device).reshape(5, 1) * hw
    for level in range(1, levels + 1):
        if b_idx.numel() == 0:
            break
        refined.view(-1)[b_idx * hw + pix] = True
        h = 3.0**-level  # child side in pixels
        area = h * h
        # (9, M): the 3 x 3 children (side h) of each of the M cells (side 3h), at offsets -h, 0, +h;
        # the cells run along the last axis, which the compiled kernel vectorises
        ku, kv = cu + oi * h, cv + oj * h
        kx, ky = cx + oi * (h * pixel_scale), cy + oj * (h * pixel_scale)
        coef = table[b_idx].T.contiguous()
        columns = [c[None] for c in coef]
        kclumps = clumps[b_idx] if clumps is not None else None
        step = torch.tensor(h * pixel_scale / 3, dtype=dtype, device=device)
        m = kx.shape[1]
        if compile and m == 1:  # one cell would specialise (recompile) the dynamic-shape kernel
            kx_, ky_, columns = kx.repeat(1, 2), ky.repeat(1, 2), [c.repeat(1, 2) for c in columns]
            kclumps = kclumps.repeat(2, 1, 1) if kclumps is not None else None
        else:
            kx_, ky_ = kx, ky
        kstats = _run_pipeline((kx_, ky_, columns[:n_lens], columns[n_lens:], kclumps, step, moments),
                               compile, _cell_pipeline)[..., :m]
        n_rays += 9 * kx.numel()
        # replace each parent's contribution (side 3h) by its children's
        flat_index = b_idx * (n_planes * hw) + pix
        flat.index_add_(0, flat_index, kstats[0].sum(0) * area - 9 * area * parent[0])
        if moments:
            old = _pixel_moments(*parent[:6], cu, cv, 3 * h) * (9 * area)
            new = _pixel_moments(*kstats[:6], ku, kv, h).sum(1) * area
            flat.index_add_(0, (flat_index + mom_plane).reshape(-1), (new - old).reshape(-1))
        if level == levels:
            break
        need = _refine_mask(kstats[-1], area, flux_tol.reshape(-1)[b_idx])
        c_idx, m_idx = torch.nonzero(need, as_tuple=True)
        b_idx, pix = b_idx[m_idx], pix[m_idx]
        cx, cy, cu, cv = kx[c_idx, m_idx], ky[c_idx, m_idx], ku[c_idx, m_idx], kv[c_idx, m_idx]
        parent = kstats[:, c_idx, m_idx]
    return AdaptiveImage(unit=unit, moments=planes[:, 1:] if moments else None, planes=planes,
                         refined=refined, n_rays=n_rays)
