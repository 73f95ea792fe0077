"""Full lensed Sersic image with Gaussian PSF against lenstronomy's ImageModel; flux conservation."""

import math

import numpy as np
import pytest
import torch

from dhs_inject import engine
from dhs_inject.priors import PriorConfig, draw_clumps, draw_parameters

pytest.importorskip("lenstronomy")
from lenstronomy.Data.imaging_data import ImageData  # noqa: E402
from lenstronomy.Data.psf import PSF  # noqa: E402
from lenstronomy.ImSim.image_model import ImageModel  # noqa: E402
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LightModel.light_model import LightModel  # noqa: E402

N_PIX, PIXEL_SCALE, SUPERSAMPLE = 64, 0.262, 3


def _lenstronomy_image(p, i, band_flux, fwhm, b_n_ours):
    ra0 = -(N_PIX - 1) / 2 * PIXEL_SCALE
    data = ImageData(image_data=np.zeros((N_PIX, N_PIX)), ra_at_xy_0=ra0, dec_at_xy_0=ra0,
                     transform_pix2angle=np.eye(2) * PIXEL_SCALE)
    model = ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=fwhm, truncation=5),
                       lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": SUPERSAMPLE})
    n, r_e = p["src_n"][i], p["src_r_e"][i]
    # lenstronomy's amp is I_e; total flux = 2 pi n R_e^2 I_e e^b b^-2n Gamma(2n) for any b
    b = b_n_ours
    amp = band_flux / (2 * math.pi * n * r_e**2 * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n))
    kw_lens = [dict(theta_E=p["theta_e"][i], e1=p["lens_e1"][i], e2=p["lens_e2"][i],
                    center_x=p["lens_x"][i], center_y=p["lens_y"][i]),
               dict(gamma1=p["gamma1"][i], gamma2=p["gamma2"][i])]
    kw_src = [dict(amp=amp, R_sersic=r_e, n_sersic=n, e1=p["src_e1"][i], e2=p["src_e2"][i],
                   center_x=p["src_x"][i], center_y=p["src_y"][i])]
    return model.image(kw_lens, kw_src)


def _draw(n, seed):
    prior = PriorConfig(lens_q=(0.3, 1.0), src_q=(0.3, 1.0), theta_e=(0.5, 2.5), src_r_e=(0.1, 0.5))
    p = draw_parameters(prior, n, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    p["lens_x"], p["lens_y"] = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    p["src_x"] += p["lens_x"]
    p["src_y"] += p["lens_y"]
    engine.lens_e1e2(p)
    return p


@pytest.mark.parametrize("dtype, compile", [(torch.float64, False), (torch.float32, True)],
                         ids=["float64-eager", "float32-compiled"])
def test_lensed_sersic_image_matches_lenstronomy(dtype, compile):
    """The eager float64 path and the fused, compiled float32 kernel both match lenstronomy."""
    p = _draw(4, seed=7)
    # lenstronomy's SERSIC_ELLIPSE shape uses the linear b_n fit; render the same profile
    p["src_b_n"] = 1.9992 * p["src_n"] - 0.3271
    fwhm_r = np.array([1.0, 1.2, 1.4, 1.1])
    kernels = engine.make_kernels(torch.tensor(fwhm_r, dtype=torch.float64), pixel_scale=PIXEL_SCALE)
    # zero-flux clump slots (as the injectors pass for clump-less sources): the compiled case then
    # runs the very kernel graph the injectors use, compiled once for the whole test session
    clumps = np.tile([0.0, 0.0, 0.0, 1.0], (4, 4, 1)) if compile else None
    # fixed grid, PSF on the pixel grid: lenstronomy's default numerics (this checks conventions;
    # convergence is test_convergence.py's)
    arc = engine.simulate_arcs(p, n_pix=N_PIX, pixel_scale=PIXEL_SCALE, supersample=SUPERSAMPLE,
                               kernels=kernels, dtype=dtype, compile=compile, clumps=clumps, psf_convolution="pixel")
    if compile:
        from dhs_inject import render

        assert render.fast_kernel_failure() is None  # the compiled kernel really ran
    b_n = p["src_b_n"]
    scales = (1.05, 1.00, 0.94)
    for i in range(4):
        for band in range(3):
            flux = float(arc.source_flux[i, band])
            ref = _lenstronomy_image(p, i, flux, fwhm_r[i] * scales[band], b_n[i])
            ours = arc.arcs[i, band].numpy()
            assert np.max(np.abs(ours - ref)) <= 1e-3 * ref.max(), (i, band)


def test_flux_conservation_arc_sums_to_magnification_times_flux():
    p = _draw(6, seed=11)
    p["beta_frac"] = p["beta_frac"] * 0.5
    kernels = engine.make_kernels(torch.full((6,), 1.2), pixel_scale=PIXEL_SCALE)
    clumps, _, _ = draw_clumps(PriorConfig(clump_prob=1.0), p["src_r_e"], np.random.default_rng(0))
    arc = engine.simulate_arcs(p, n_pix=101, kernels=kernels, clumps=clumps)
    total = arc.arcs.sum(dim=(-2, -1))
    expected = arc.magnification[:, None] * arc.source_flux
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-2)


def test_compiled_arcs_hold_no_denormal_floats():
    """Faint profile tails are zeroed, not left as denormals (which slow all later arithmetic).

    The floor lives in the per-sample function that the fixed and the adaptive kernels share; the
    fixed path is used here because its compiled graph is the one test above already built."""
    p = _draw(8, seed=5)
    p["src_n"][:] = 0.5  # Gaussian-like sources: their tails underflow within the stamp
    kernels = engine.make_kernels(torch.full((8,), 1.2), pixel_scale=PIXEL_SCALE)
    clumps = np.tile([0.0, 0.0, 0.0, 1.0], (8, 4, 1))
    arc = engine.simulate_arcs(p, n_pix=N_PIX, kernels=kernels, compile=True, clumps=clumps, supersample=SUPERSAMPLE,
                               psf_convolution="pixel")
    tiny = torch.finfo(torch.float32).tiny
    assert int(((arc.arcs != 0) & (arc.arcs.abs() < tiny)).sum()) == 0
    assert int((arc.arcs == 0).sum()) > 0  # the floor was reached: the check above means something


def test_unlensed_sersic_integrates_to_flux_and_half_light_radius():
    """Closed form: with no lens mass the image sums to the flux, half of it inside R_e."""
    from scipy import integrate

    from dhs_inject.sources import sersic_surface_brightness

    for n in (0.7, 1.0, 2.5, 4.0):
        def sb(r, n=n):
            return 2 * np.pi * r * sersic_surface_brightness(np.array([r]), np.array([0.0]), flux=3.0,
                                                              r_e=0.4, n=n, e1=0.0, e2=0.0,
                                                              dtype=torch.float64)[0]
        inside, _ = integrate.quad(sb, 0, 0.4, limit=200)
        total, _ = integrate.quad(sb, 0, 400, limit=400, points=[0.4, 4, 40])
        assert abs(total - 3.0) < 3e-3 * 3.0
        assert abs(inside - 1.5) < 1e-3 * 3.0


def test_sis_total_magnification_of_a_small_source():
    """SIS point source inside the Einstein radius: |mu| total = 2 theta_e / beta (closed form)."""
    p = dict(theta_e=np.array([1.5]), lens_q=np.array([1.0]), lens_phi=np.zeros(1), lens_x=np.zeros(1),
             lens_y=np.zeros(1), gamma_ext=np.zeros(1), gamma_phi=np.zeros(1), src_x=np.array([0.5]),
             src_y=np.zeros(1), src_r_mag=np.array([22.5]), src_g_r=np.zeros(1), src_r_z=np.zeros(1),
             src_r_e=np.array([0.03]), src_n=np.array([1.0]), src_q=np.array([1.0]), src_phi=np.zeros(1))
    engine.lens_e1e2(p)
    kernels = engine.make_kernels(torch.tensor([1.0], dtype=torch.float64), pixel_scale=0.262)
    arc = engine.simulate_arcs(p, n_pix=48, supersample=9, kernels=kernels, dtype=torch.float64)
    assert abs(float(arc.magnification[0]) - 2 * 1.5 / 0.5) < 0.02 * 6.0
