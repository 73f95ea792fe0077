"""Injection and the synthetic survey share one physics stack: Sersic b_n, Moffat PSF, sky sigma.

b_n is checked against its defining closed form (R_e encloses half the light of a Sersic profile:
gammainc(2n, b_n) = 1/2); the Moffat kernels and sky sigmas of the synthetic survey's tables are
compared bit for bit with what the injection engine computes for the same FWHM and depth.
"""

import numpy as np
import pytest
import torch
from scipy.special import gammainc, gammaincinv

import dhs_core.allocator
from dhs_inject import engine, noise, render, sources
from dhs_inject.synthetic import morphology, optics
from dhs_inject.synthetic import source as synthetic_source
from dhs_inject.synthetic.config import SyntheticConfig

N_VALUES = [0.5, 0.7, 1.0, 1.5, 2.5, 4.0, 6.0]


def test_sersic_b_n_encloses_half_the_light():
    n = np.array(N_VALUES)
    b = sources.sersic_b_n(torch.tensor(n, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(gammainc(2 * n, b), 0.5, rtol=0, atol=1e-13)
    np.testing.assert_allclose(b, gammaincinv(2 * n, 0.5), rtol=1e-15)
    # numpy in, float64 numpy out: the same values (the synthetic survey's host profiles use it)
    np.testing.assert_array_equal(sources.sersic_b_n(n), b)
    assert morphology.sersic_b_n is sources.sersic_b_n


def test_sersic_b_n_keeps_dtype_and_does_not_track_gradients():
    n = torch.tensor(N_VALUES, dtype=torch.float32, requires_grad=True)
    b = sources.sersic_b_n(n)
    assert b.dtype == torch.float32 and not b.requires_grad
    np.testing.assert_allclose(b.numpy(), gammaincinv(2 * np.float32(N_VALUES).astype(float), 0.5), rtol=1e-7)


def test_injection_engine_sersic_uses_the_exact_half_light_b_n():
    n = torch.tensor(N_VALUES, dtype=torch.float64)
    ones, zeros = torch.ones_like(n), torch.zeros_like(n)
    r_e = 0.7 * ones
    # circular profile: I(R_e) / I(2^n R_e) = exp(b_n), whatever the normalisation
    x = torch.stack([r_e, r_e * 2**n], dim=1)
    sb = sources.sersic_surface_brightness(x, torch.zeros_like(x), flux=ones, r_e=r_e, n=n, e1=zeros,
                                           e2=zeros, dtype=torch.float64)
    b_eager = torch.log(sb[:, 0] / sb[:, 1]).numpy()
    np.testing.assert_allclose(gammainc(2 * n.numpy(), b_eager), 0.5, atol=1e-10)
    # the fused ray-shooting kernel's per-source b_n (the default Sersic path of every injector)
    src = dict(flux=ones, r_e=r_e, n=n, e1=zeros, e2=zeros, center_x=zeros, center_y=zeros)
    b_fused = render._source_coefficients(src)[3].numpy()
    np.testing.assert_array_equal(b_fused, gammaincinv(2 * n.numpy(), 0.5))


@pytest.mark.parametrize("beta", [2.5, 3.5])
def test_moffat_kernel_of_injection_is_the_synthetic_surveys(beta):
    fwhm, table = optics.moffat_table(beta)
    pick = [0, 80, 170, len(fwhm) - 1]
    for i in pick:
        # alone, and batched with other FWHMs: the kernel depends on its own FWHM only
        for psfsize in (fwhm[i:i + 1], fwhm[pick]):
            kernels = engine.make_kernels(psfsize, pixel_scale=morphology.PIXEL_SCALE, model="moffat",
                                          moffat_beta=beta, band_scale=(1.0, 1.0, 1.0))
            row = list(psfsize).index(fwhm[i])
            for band in range(3):
                assert torch.equal(kernels[row, band], table[i])


def test_sky_sigma_of_injection_is_the_synthetic_surveys():
    beta, stamp = 3.5, 64
    fwhm, _ = optics.moffat_table(beta)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(fwhm), size=(5, 3))
    depth = rng.uniform(100.0, 3000.0, size=(5, 3))
    survey = optics.sky_sigma(fwhm.numpy()[idx], depth, stamp, beta)
    kernels = torch.stack([engine.make_kernels(fwhm[idx[:, b]], pixel_scale=morphology.PIXEL_SCALE,
                                               model="moffat", moffat_beta=beta, band_scale=(1.0, 1.0, 1.0))[:, b]
                           for b in range(3)], dim=1)
    injection = noise.sky_sigma_from_psfdepth(torch.as_tensor(depth), kernels).numpy()
    np.testing.assert_array_equal(injection, survey)
    # and the relation itself: psfdepth is the inverse variance of a PSF-weighted flux
    np.testing.assert_allclose(injection**2 * depth, (kernels**2).sum((-2, -1)).numpy(), rtol=1e-12)


def _forbid_malloc_tuning(monkeypatch):
    calls = []
    monkeypatch.setattr(dhs_core.allocator, "_state", None)
    monkeypatch.setattr(dhs_core.allocator, "_apply", lambda: calls.append(1) or False)
    return calls


def test_simulate_arcs_leaves_process_wide_malloc_settings_alone(monkeypatch):
    calls = _forbid_malloc_tuning(monkeypatch)
    n = 2
    params = dict(theta_e=np.full(n, 1.2), lens_e1=np.full(n, 0.1), lens_e2=np.zeros(n), lens_x=np.zeros(n),
                  lens_y=np.zeros(n), gamma1=np.zeros(n), gamma2=np.zeros(n), src_x=np.full(n, 0.05),
                  src_y=np.zeros(n), src_r_mag=np.full(n, 22.0), src_g_r=np.zeros(n), src_r_z=np.zeros(n),
                  src_r_e=np.full(n, 0.3), src_n=np.full(n, 1.0), src_e1=np.zeros(n), src_e2=np.zeros(n))
    kernels = engine.make_kernels(torch.full((n,), 1.2), pixel_scale=0.262)
    engine.simulate_arcs(params, n_pix=21, kernels=kernels)
    assert calls == []


def test_synthetic_source_sets_malloc_tuning_once_at_start(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(synthetic_source, "retain_freed_memory", lambda: calls.append(1) or True)
    synthetic_source.generate(SyntheticConfig(n_hosts=4, chunk_size=2), 1, tmp_path)
    assert calls == [1]
