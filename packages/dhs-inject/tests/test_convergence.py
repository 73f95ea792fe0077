"""Convergence of the default render (adaptive supersampling + sub-pixel PSF) against brute force.

The reference is independent of the fused kernels: the public lensing and source functions
(:func:`dhs_inject.lensing.sie_deflection`, :func:`dhs_inject.sources.sersic_surface_brightness`,
both tested against lenstronomy) evaluated eagerly in float64 on a fixed, even 28 x 28 sub-pixel
grid (no sub-pixel on a pixel centre, so none on the lens centre), convolved at the sub-pixel
scale with the Gaussian PSF sampled there, then binned. Tolerance (docs/inject.md): total flux
within 1 % and every pixel within 1 % of the peak of each band's converged image.
"""

import math
import os

import numpy as np
import pytest
import torch

from dhs_inject import engine
from dhs_inject.lensing import shear_deflection, sie_deflection
from dhs_inject.priors import PriorConfig, draw_clumps, draw_parameters
from dhs_inject.sources import sersic_surface_brightness

PIXEL_SCALE, BAND_SCALE = 0.262, (1.05, 1.00, 0.94)
# The reference costs ~0.5-1 us per float64 sub-pixel ray on 2 cores, so the default run is a fast
# form: 24 prior draws and 2 per corner. Compact sources (R_e < 0.15") get the reference at 168
# sub-pixels per side: n ~ 3 sources still move by up to ~2 % between 28 and 56, and a weakly
# lensed n = 4, R_e 0.05" source (theta_E 2.44", beta 0.82 theta_E, seed 7's compact corner) is
# 4.7 % too bright at 56, where a sub-pixel lands near its cusp; 84 is not enough on the caustic
# (seed 7's on_caustic draws: up to 0.25 % in flux and 0.76 % of the peak from 252), 168 is
# (<= 0.04 % and 0.24 %). The others get 28 (28 vs 56 over the R_e >= 0.15" draws of the first 40 of seed 2024:
# <= 0.08 % in flux, <= 0.15 % of the peak per pixel). DHS_CONVERGENCE_FULL=1 runs the full suite
# (docs/inject.md): 200 prior draws and 12 per corner, the larger sources' reference at 56.
FULL = os.environ.get("DHS_CONVERGENCE_FULL") == "1"
N_DRAWS, N_CORNER = (200, 12) if FULL else (24, 2)
REF_SUPERSAMPLE, REF_COMPACT = 56, 168  # even: no sub-pixel on a pixel centre, hence on the lens centre
COMPACT_R_E = 0.15  # arcsec: below it the reference is at REF_COMPACT; above, REF_SUPERSAMPLE (full) or half
CHUNK_RAYS = 1 << 20  # rays per block of the reference: big enough for vectorised ops, small for memory


def _subpixel_psf_matrix(fwhm: float, n_pix: int, s: int) -> torch.Tensor:
    """(n_pix, n_pix s) 1-d Gaussian convolution at the sub-pixel scale followed by summing the
    s sub-pixels of each output pixel (a circular Gaussian is separable)."""
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2))) / PIXEL_SCALE * s  # in sub-pixels
    n_sub = n_pix * s
    d = torch.arange(n_sub, dtype=torch.float64)
    radius = int(6 * sigma) + 1
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    taps /= taps.sum()
    offset = d[:, None] - d[None, :]  # output sub-pixel - input sub-pixel
    toeplitz = torch.where(offset.abs() <= radius, taps[(offset + radius).clamp(0, 2 * radius).long()], 0.0)
    return toeplitz.reshape(n_pix, s, n_sub).sum(1)


def reference_arcs(p, clumps, fwhm_r, n_pix, s=REF_SUPERSAMPLE):
    """(N, 3, H, W) brute-force arcs (float64), PSF convolved at the sub-pixel scale.

    All N draws at once, one row of pixels (s sub-pixel rows) at a time: the PSF matrix M is
    separable, so ``M S M^T`` is the sum over row blocks k of ``M[:, k] (S[k] M^T)`` and no
    full (H s, W s) sub-pixel plane is ever held (a 51-pixel stamp at s = 56 is 8 M rays)."""
    n = len(fwhm_r)
    idx = (torch.arange(n_pix * s, dtype=torch.float64) + 0.5) / s - 0.5 - (n_pix - 1) / 2
    coord = idx * PIXEL_SCALE
    flux = torch.as_tensor(engine.band_fluxes(p["src_r_mag"], p["src_g_r"], p["src_r_z"]), dtype=torch.float64)
    # (N, 3, H, W s): per draw and band; the Gaussian is circular, so rows and columns share it
    mats = torch.stack([torch.stack([_subpixel_psf_matrix(float(f) * b, n_pix, s) for b in BAND_SCALE])
                        for f in fwhm_r])
    t = {k: torch.as_tensor(np.asarray(v, dtype=float)) for k, v in p.items() if np.ndim(v) == 1}
    smooth = 1.0 - (torch.as_tensor(clumps[:, :, 0]).sum(1) if clumps is not None else torch.zeros(n))
    out = torch.zeros(n, 3, n_pix, n_pix, dtype=torch.float64)
    rows = max(1, CHUNK_RAYS // (n * s * s * n_pix))  # pixel rows per block: ~CHUNK_RAYS rays
    for row in range(0, n_pix, rows):
        block = slice(row * s, min(row + rows, n_pix) * s)
        y, x = torch.meshgrid(coord[block], coord, indexing="ij")
        x, y = x[None], y[None]  # (1, rows s, W s) against (N,) parameters
        ax, ay = sie_deflection(x, y, theta_e=t["theta_e"], e1=t["lens_e1"], e2=t["lens_e2"],
                                center_x=t["lens_x"], center_y=t["lens_y"], dtype=torch.float64)
        gx, gy = shear_deflection(x, y, gamma1=t["gamma1"], gamma2=t["gamma2"], dtype=torch.float64)
        bx, by = x - ax - gx, y - ay - gy
        sb = sersic_surface_brightness(bx, by, flux=smooth, r_e=t["src_r_e"], n=t["src_n"], e1=t["src_e1"],
                                       e2=t["src_e2"], center_x=t["src_x"], center_y=t["src_y"],
                                       dtype=torch.float64)
        if clumps is not None:
            bx, by = bx - t["src_x"].reshape(-1, 1, 1), by - t["src_y"].reshape(-1, 1, 1)
            for k in range(clumps.shape[1]):
                f, cx, cy, sig = (torch.as_tensor(clumps[:, k, j], dtype=torch.float64).reshape(-1, 1, 1)
                                  for j in range(4))
                if not bool((f > 0).any()):
                    continue
                sig = torch.where(f > 0, sig, 1.0)  # zero-flux padding rows
                r2 = (bx - cx) ** 2 + (by - cy) ** 2
                sb = sb + f / (2 * math.pi * sig**2) * torch.exp(-0.5 * r2 / sig**2)
        for i in range(n):  # (3, H, rows s) @ ((rows s, W s) @ (W s, H) per band)
            out[i] += mats[i, :, :, block] @ (sb[i] @ mats[i].transpose(-1, -2))
    return out * flux[..., None, None] * (PIXEL_SCALE / s) ** 2  # surface brightness -> flux


def _errors(ours: torch.Tensor, ref: torch.Tensor):
    """(flux error, max pixel error / peak), per draw, worst band."""
    ours = ours.double()
    flux_err = (ours.sum(dim=(-2, -1)) / ref.sum(dim=(-2, -1)) - 1).abs().amax(1)
    pix_err = ((ours - ref).abs().amax(dim=(-2, -1)) / ref.abs().amax(dim=(-2, -1))).amax(1)
    return flux_err.numpy(), pix_err.numpy()


def _draw(n, seed, prior=PriorConfig(), clumpy=True):
    rng = np.random.default_rng(seed)
    p = draw_parameters(prior, n, rng)
    clumps = None
    if clumpy:
        clumps, p["n_clumps"], p["clump_frac"] = draw_clumps(prior, p["src_r_e"], rng)
    engine.lens_e1e2(p)
    return p, clumps, rng.uniform(0.8, 1.6, n)


def _render_default(p, clumps, fwhm_r, n_pix, **kwargs):
    kernels = engine.make_kernels(torch.as_tensor(fwhm_r, dtype=torch.float32), pixel_scale=PIXEL_SCALE)
    return engine.simulate_arcs(p, n_pix=n_pix, kernels=kernels, clumps=clumps, **kwargs)


def _stamp(theta_e: float, beta_frac: float) -> int:
    """Odd stamp size holding both images (the outer one ~ theta_E (1 + beta) from the lens) and
    their PSF core; light the PSF spreads beyond it is lost from both renders alike."""
    return 2 * int(math.ceil((theta_e * (1 + beta_frac) + 0.6) / PIXEL_SCALE)) + 1


def _check(p, clumps, fwhm_r, tol=0.01, **kwargs):
    """Render every draw by default and by brute force, on stamps sized by theta_E; assert the
    tolerance. Returns per-draw flux and pixel errors and the fraction of pixels refined."""
    n_pix = np.array([_stamp(t, b) for t, b in zip(p["theta_e"], p["beta_frac"])])
    compact = np.asarray(p["src_r_e"]) < COMPACT_R_E
    level = np.where(compact, REF_COMPACT, REF_SUPERSAMPLE if FULL else REF_SUPERSAMPLE // 2)
    flux_err, pix_err, refined = (np.zeros(len(n_pix)) for _ in range(3))
    for size, s in sorted(set(zip(n_pix.tolist(), level.tolist()))):
        rows = np.flatnonzero((n_pix == size) & (level == s))
        q = {k: np.asarray(v)[rows] for k, v in p.items()}
        c = clumps[rows] if clumps is not None else None
        arc = _render_default(q, c, fwhm_r[rows], int(size), **kwargs)
        flux_err[rows], pix_err[rows] = _errors(arc.arcs, reference_arcs(q, c, fwhm_r[rows], int(size), s=s))
        refined[rows] = arc.refined_fraction.numpy()
    worst = int(np.argmax(np.maximum(flux_err, pix_err)))
    detail = {k: round(float(np.asarray(v)[worst]), 4) for k, v in p.items() if np.ndim(v) == 1}
    assert flux_err.max() <= tol, (float(flux_err.max()), detail)
    assert pix_err.max() <= tol, (float(pix_err.max()), detail)
    return flux_err, pix_err, refined


@pytest.mark.convergence
def test_default_render_converges_over_the_default_prior():
    """Seeded draws of the default prior (with clumps): flux and pixels within 1 % (200 in the full suite)."""
    flux_err, pix_err, refined = _check(*_draw(N_DRAWS, seed=2024))
    print(f"{N_DRAWS} draws: worst flux error {flux_err.max():.2%}, worst pixel error {pix_err.max():.2%} of the "
          f"peak, {refined.mean():.1%} of pixels refined")  # shown with pytest -s (docs/inject.md quotes it)
    assert refined.mean() < 0.5  # refinement stays local


@pytest.mark.convergence
@pytest.mark.parametrize("corner", ["compact_cuspy", "on_caustic", "flat_lens", "small_theta_e", "large_theta_e"])
def test_default_render_converges_at_adversarial_corners(corner):
    """R_e 0.05" with n 4; sources on the SIE caustic; lens q 0.3; theta_E 0.5" and 3"."""
    n = N_CORNER
    prior = dict(compact_cuspy=PriorConfig(src_r_e=(0.05, 0.05), src_n=(4.0, 4.0)),
                 on_caustic=PriorConfig(src_r_e=(0.05, 0.1), src_n=(1.0, 4.0)),
                 flat_lens=PriorConfig(lens_q=(0.3, 0.3), src_q=(0.3, 0.5), src_r_e=(0.05, 0.2)),
                 small_theta_e=PriorConfig(theta_e=(0.5, 0.5), src_r_e=(0.05, 0.2)),
                 large_theta_e=PriorConfig(theta_e=(3.0, 3.0), src_r_e=(0.05, 0.2)))[corner]
    p, clumps, fwhm_r = _draw(n, seed=7, prior=prior, clumpy=False)
    if corner == "on_caustic":
        # the tangential caustic of an SIE (no shear) along its minor axis, where the source is
        # most magnified: the cusp at beta = theta_e sqrt(q) (1/q - 1) ... approximated by walking
        # the source along the minor axis to where the image-plane magnification diverges
        p["gamma_ext"][:] = 0.0
        engine.lens_e1e2(p)
        from dhs_inject.lensing import magnification

        t = np.linspace(0.0, 1.0, 4001)
        for i in range(n):
            phi, th = p["lens_phi"][i], p["theta_e"][i]
            # image positions along the major axis, mapped to the source plane: the caustic is
            # where 1/mu changes sign
            xs, ys = t * 1.5 * th * np.cos(phi), t * 1.5 * th * np.sin(phi)
            mu = magnification(xs, ys, theta_e=th, e1=p["lens_e1"][i], e2=p["lens_e2"][i], dtype=torch.float64)
            k = int(np.argmax(np.abs(mu[1:])) + 1)
            ax, ay = sie_deflection(np.array([xs[k]]), np.array([ys[k]]), theta_e=th, e1=p["lens_e1"][i],
                                    e2=p["lens_e2"][i], dtype=torch.float64)
            p["src_x"][i], p["src_y"][i] = xs[k] - ax[0], ys[k] - ay[0]
    flux_err, pix_err, refined = _check(p, clumps, fwhm_r)
    print(f"{corner}, {n} draws: worst flux error {flux_err.max():.2%}, worst pixel error {pix_err.max():.2%} "
          f"of the peak, {refined.mean():.1%} of pixels refined")


def test_fixed_grid_is_not_converged_where_adaptive_is():
    """The reason for the default: the old fixed 3 x 3 grid with pixel-grid PSF misses the tolerance."""
    p, clumps, fwhm_r = _draw(6, seed=3, prior=PriorConfig(src_r_e=(0.05, 0.1), src_n=(2.0, 4.0), theta_e=(0.5, 1.0)),
                              clumpy=False)
    arc = _render_default(p, clumps, fwhm_r, 21, supersample=3, psf_convolution="pixel")
    flux_err, pix_err = _errors(arc.arcs, reference_arcs(p, clumps, fwhm_r, 21, s=28))
    assert max(flux_err.max(), pix_err.max()) > 0.05


def test_singular_lens_centre_adds_no_spurious_sample():
    """Lens on a pixel centre (odd stamp, odd grid), compact source behind it: the central pixel
    matches a high-resolution even-grid reference (no ray on the singular point) at fixed s = 3."""
    p, _, _ = _draw(1, seed=5, prior=PriorConfig(theta_e=(1.0, 1.0), beta_frac=(0.1, 0.1), src_r_e=(0.3, 0.3),
                                                 src_n=(1.0, 1.0)), clumpy=False)
    fwhm = np.array([1.2])
    ref = reference_arcs(p, None, fwhm, 15, s=56)
    arc = _render_default(p, None, fwhm, 15, supersample=3, psf_convolution="subpixel", dtype=torch.float64)
    centre_err = float((arc.arcs[0, 1, 7, 7] - ref[0, 1, 7, 7]).abs() / ref[0, 1].max())
    assert centre_err < 3e-3


def test_sis_point_source_magnification_and_unlensed_flux_conservation():
    """Closed forms: a tiny source behind an SIS has total |mu| = 2 theta_E / beta; an SIE of
    (almost) zero mass leaves a source's flux unchanged (adaptive default render)."""
    base = dict(lens_phi=np.zeros(1), lens_x=np.zeros(1), lens_y=np.zeros(1), gamma_ext=np.zeros(1),
                gamma_phi=np.zeros(1), src_y=np.zeros(1), src_r_mag=np.array([22.5]), src_g_r=np.zeros(1),
                src_r_z=np.zeros(1), src_n=np.array([1.0]), src_q=np.array([1.0]), src_phi=np.zeros(1))
    kernels = engine.make_kernels(torch.tensor([1.0], dtype=torch.float64), pixel_scale=PIXEL_SCALE)
    p = dict(base, theta_e=np.array([1.5]), lens_q=np.array([1.0]), src_x=np.array([0.5]), src_r_e=np.array([0.01]))
    engine.lens_e1e2(p)
    arc = engine.simulate_arcs(p, n_pix=31, kernels=kernels, dtype=torch.float64)
    assert abs(float(arc.magnification[0]) - 2 * 1.5 / 0.5) < 0.01 * 6.0
    # unlensed: an exponential of R_e 0.05", and n = 4 profiles of R_e 0.3" and of R_e 0.05" (whose
    # cusp holds ~5 % of the light within 1/243 pixel of the centre: refined towards the core)
    for n, r_e, half in ((1.0, 0.05, 10), (4.0, 0.3, 40), (4.0, 0.05, 10)):
        p = dict(base, theta_e=np.array([1e-6]), lens_q=np.array([0.7]), src_x=np.array([0.1]),
                 src_r_e=np.array([r_e]))
        p["src_n"][:] = n
        engine.lens_e1e2(p)
        arc = engine.simulate_arcs(p, n_pix=2 * half + 1, kernels=kernels, dtype=torch.float64)
        assert abs(float(arc.magnification[0]) - 1.0) < 0.01, n
        assert abs(float(arc.arcs[0, 1].sum()) - 1.0) < 0.01, n


def test_adaptive_render_agrees_with_lenstronomy_supersampled_convolution():
    """Second reference: lenstronomy at supersampling 15 with its sub-pixel PSF convolution
    (sources of R_e >= 0.15", which 15 sub-pixels per side resolve)."""
    lenstronomy = pytest.importorskip("lenstronomy")  # noqa: F841
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    p, _, fwhm_r = _draw(2, seed=11, prior=PriorConfig(theta_e=(0.8, 1.2), src_r_e=(0.15, 0.3), src_n=(1.0, 2.0)),
                         clumpy=False)
    p["src_b_n"] = 1.9992 * p["src_n"] - 0.3271  # lenstronomy's b_n
    n_pix, s = 19, 15
    arc = _render_default(p, None, fwhm_r, n_pix, dtype=torch.float64)
    ra0 = -(n_pix - 1) / 2 * PIXEL_SCALE
    data = ImageData(image_data=np.zeros((n_pix, n_pix)), ra_at_xy_0=ra0, dec_at_xy_0=ra0,
                     transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    for i in range(2):
        fwhm = float(fwhm_r[i])
        model = ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=fwhm, pixel_size=PIXEL_SCALE, truncation=5),
                           lens_model_class=LensModel(["SIE", "SHEAR"]), source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                           kwargs_numerics={"supersampling_factor": s, "supersampling_convolution": True,
                                            "supersampling_kernel_size": n_pix})
        n, r_e, b = p["src_n"][i], p["src_r_e"][i], p["src_b_n"][i]
        flux = float(arc.source_flux[i, 1])
        amp = flux / (2 * math.pi * n * r_e**2 * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n))
        ref = model.image([dict(theta_E=p["theta_e"][i], e1=p["lens_e1"][i], e2=p["lens_e2"][i], center_x=0.0,
                                center_y=0.0), dict(gamma1=p["gamma1"][i], gamma2=p["gamma2"][i])],
                          [dict(amp=amp, R_sersic=r_e, n_sersic=n, e1=p["src_e1"][i], e2=p["src_e2"][i],
                                center_x=p["src_x"][i], center_y=p["src_y"][i])])
        ours = arc.arcs[i, 1].numpy()
        assert abs(ours.sum() / ref.sum() - 1) < 0.01
        assert np.abs(ours - ref).max() < 0.01 * ref.max()


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 3.0, 4.0])  # the default prior's range of n
def test_core_radius_of_the_refinement_holds_at_most_core_flux(n):
    """The core rule's radius (render._source_coefficients, last constant) against scipy's
    regularised incomplete gamma: the Sersic light inside it is at most CORE_FLUX and not far
    below (it is the small-argument inverse, which errs on the small side)."""
    from scipy.special import gammainc, gammaincinv

    from dhs_inject.render import CORE_FLUX, _source_coefficients
    from dhs_inject.sources import sersic_b_n

    one = torch.ones(1, dtype=torch.float64)
    src = dict(e1=0 * one, e2=0 * one, r_e=one, n=n * one, flux=one, center_x=0 * one, center_y=0 * one)
    radius = float(_source_coefficients(src)[8].sqrt())
    b = float(sersic_b_n(n * one))
    enclosed = gammainc(2 * n, b * radius ** (1 / n))
    assert enclosed <= CORE_FLUX * (1 + 1e-9)
    assert radius >= 0.3 * (gammaincinv(2 * n, CORE_FLUX) / b) ** n
