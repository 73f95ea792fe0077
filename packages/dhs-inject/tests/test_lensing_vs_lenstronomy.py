"""SIE + shear physics against lenstronomy (independent reference) and closed forms."""

import numpy as np
import pytest
import torch

from dhs_inject import lensing

lenstronomy = pytest.importorskip("lenstronomy")
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.Util import param_util  # noqa: E402


def _random_lens(rng):
    q = rng.uniform(0.3, 1.0)
    phi = rng.uniform(0, np.pi)
    e1, e2 = param_util.phi_q2_ellipticity(phi, q)
    return dict(theta_E=rng.uniform(0.3, 3.0), e1=e1, e2=e2, center_x=rng.normal(0, 0.4),
                center_y=rng.normal(0, 0.4)), dict(gamma1=rng.normal(0, 0.04), gamma2=rng.normal(0, 0.04))


@pytest.mark.parametrize("seed", range(6))
def test_deflection_matches_lenstronomy(seed):
    rng = np.random.default_rng(seed)
    sie, shear = _random_lens(rng)
    x, y = rng.uniform(-6, 6, 2000), rng.uniform(-6, 6, 2000)
    ref_x, ref_y = LensModel(["SIE", "SHEAR"]).alpha(x, y, [sie, shear])
    ax, ay = lensing.sie_deflection(x, y, theta_e=sie["theta_E"], e1=sie["e1"], e2=sie["e2"],
                                    center_x=sie["center_x"], center_y=sie["center_y"])
    sx, sy = lensing.shear_deflection(x, y, **shear)
    assert isinstance(ax, np.ndarray) and ax.dtype == np.float64
    scale = np.hypot(ref_x, ref_y)
    assert np.max(np.hypot(ax + sx - ref_x, ay + sy - ref_y) / scale) < 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_convergence_and_magnification_match_lenstronomy(seed):
    rng = np.random.default_rng(100 + seed)
    sie, shear = _random_lens(rng)
    x, y = rng.uniform(-5, 5, 1000), rng.uniform(-5, 5, 1000)
    model = LensModel(["SIE", "SHEAR"])
    kw = dict(theta_e=sie["theta_E"], e1=sie["e1"], e2=sie["e2"], center_x=sie["center_x"],
              center_y=sie["center_y"])
    kappa = lensing.convergence(x, y, **kw)
    # lenstronomy's NIE Hessian is a 1e-10 finite difference: compare at 1e-3
    np.testing.assert_allclose(kappa, model.kappa(x, y, [sie, shear]), rtol=1e-3)
    mu = lensing.magnification(x, y, **kw, **shear)
    ref_mu = model.magnification(x, y, [sie, shear])
    ok = np.abs(ref_mu) < 100  # away from critical curves, where mu diverges
    np.testing.assert_allclose(mu[ok], ref_mu[ok], rtol=1e-3)


def test_sis_limit_closed_form():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-3, 3, 500), rng.uniform(-3, 3, 500)
    ax, ay = lensing.sie_deflection(x, y, theta_e=1.7, e1=0.0, e2=0.0)
    r = np.hypot(x, y)
    np.testing.assert_allclose(ax, 1.7 * x / r, rtol=1e-6)
    np.testing.assert_allclose(ay, 1.7 * y / r, rtol=1e-6)


def test_point_source_images_satisfy_lens_equation():
    """Images found by lenstronomy's solver map back (through our deflection) to the source."""
    from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

    sie = dict(theta_E=1.2, e1=0.15, e2=-0.05, center_x=0.05, center_y=-0.02)
    shear = dict(gamma1=0.03, gamma2=0.01)
    model = LensModel(["SIE", "SHEAR"])
    xs, ys = LensEquationSolver(model).image_position_from_source(0.1, 0.07, [sie, shear],
                                                                  precision_limit=1e-12)
    assert len(xs) >= 2
    ax, ay = lensing.sie_deflection(xs, ys, theta_e=1.2, e1=0.15, e2=-0.05, center_x=0.05, center_y=-0.02)
    sx, sy = lensing.shear_deflection(xs, ys, **shear)
    np.testing.assert_allclose(xs - ax - sx, 0.1, atol=1e-6)
    np.testing.assert_allclose(ys - ay - sy, 0.07, atol=1e-6)


def test_torch_batched_float32_and_float64():
    theta_e = torch.tensor([1.0, 2.0])
    x = torch.linspace(-2, 2, 10).repeat(2, 1) + 0.01
    ax, _ = lensing.sie_deflection(x, torch.zeros_like(x), theta_e=theta_e, e1=0.0, e2=0.0)
    assert isinstance(ax, torch.Tensor) and ax.dtype == torch.float32 and ax.shape == (2, 10)
    np.testing.assert_allclose(ax[1].numpy(), 2.0 * np.sign(x[1].numpy()), rtol=1e-5)
    ax64, _ = lensing.sie_deflection(x, torch.zeros_like(x), theta_e=theta_e, e1=0.0, e2=0.0,
                                     dtype=torch.float64)
    assert ax64.dtype == torch.float64


def test_phi_q_matches_lenstronomy():
    e1, e2 = lensing.phi_q_to_e1e2(0.4, 0.6)
    assert np.allclose((e1, e2), param_util.phi_q2_ellipticity(0.4, 0.6))


@pytest.mark.parametrize("bad", [dict(theta_e=0.0), dict(theta_e=-1.0)])
def test_bad_theta_e_is_a_clear_error(bad):
    from dhs_inject.errors import InjectionParameterError

    with pytest.raises(InjectionParameterError, match="theta_e"):
        lensing.sie_deflection(np.ones(3), np.ones(3), e1=0.0, e2=0.0, **bad)


@pytest.mark.parametrize("q", [0.0, -0.2, 1.3])
def test_bad_axis_ratio_is_a_clear_error(q):
    from dhs_inject.errors import InjectionParameterError

    with pytest.raises(InjectionParameterError, match="q"):
        lensing.phi_q_to_e1e2(0.1, q)


@pytest.mark.parametrize("r_e", [0.0, -0.2])
def test_non_positive_half_light_radius_is_a_clear_error(r_e):
    from dhs_inject import engine, sources
    from dhs_inject.errors import InjectionParameterError
    from dhs_inject.priors import PriorConfig, draw_parameters

    with pytest.raises(InjectionParameterError, match="R_e must be > 0"):
        sources.sersic_surface_brightness(np.zeros(3), np.zeros(3), flux=1.0, r_e=r_e, n=1.0, e1=0.0, e2=0.0)
    params = draw_parameters(PriorConfig(), 2, np.random.default_rng(0))
    engine.lens_e1e2(params)
    params["src_r_e"][1] = r_e
    kernels = engine.make_kernels(torch.full((2,), 1.2), pixel_scale=0.262)
    with pytest.raises(InjectionParameterError, match="R_e must be > 0"):
        engine.simulate_arcs(params, n_pix=21, kernels=kernels)


@pytest.mark.parametrize("field, value, message", [
    ("src_r_e", (-0.1, 0.3), "half-light radius must be > 0"),
    ("theta_e", (0.0, 1.0), "Einstein radius must be > 0"),
    ("lens_q", (0.2, 1.3), "axis ratio must lie in"),
    ("src_n", (4.0, 0.5), "lower bound exceeds the upper"),
    ("clump_frac", (0.2, 1.0), "flux fraction"),
])
def test_prior_ranges_are_checked_when_the_spec_is_read(field, value, message):
    from pydantic import ValidationError

    from dhs_inject.priors import PriorConfig

    with pytest.raises(ValidationError, match=message):
        PriorConfig(**{field: value})
