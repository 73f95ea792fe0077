"""The injection engine renders on a chosen device (``InjectorConfig.device``).

Each device's float32 render is checked against a float64 render on the CPU: every pixel of
every arc within 1e-3 of that arc's peak (the accuracy bar the renderer is held to against
lenstronomy). The CPU case always runs; the CUDA case is marked ``cuda`` and runs where torch sees
a GPU (``pytest -m cuda``, benchmarks/gpu/run.sh).
"""

import numpy as np
import pytest
import torch

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_inject import engine
from dhs_inject.priors import PriorConfig, draw_clumps, draw_parameters

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                              pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")])]
PEAK_TOLERANCE = 1e-3


def _draws(n=24, seed=3):
    rng = np.random.default_rng(seed)
    prior = PriorConfig()
    params = draw_parameters(prior, n, rng)
    clumps, params["n_clumps"], params["clump_frac"] = draw_clumps(prior, params["src_r_e"], rng)
    engine.lens_e1e2(params)
    return params, clumps, rng.uniform(0.9, 1.6, n)


def _render(params, clumps, fwhm, dtype, device, **numerics):
    kernels = engine.make_kernels(torch.as_tensor(fwhm, dtype=dtype, device=device), pixel_scale=0.262)
    arcs = engine.simulate_arcs(params, n_pix=41, kernels=kernels, clumps=clumps, dtype=dtype, device=device,
                                compile=False, **numerics)
    return arcs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("numerics", [{}, dict(supersample=9, psf_convolution="pixel")], ids=["adaptive", "fixed9"])
def test_render_on_device_matches_cpu_float64(device, numerics):
    params, clumps, fwhm = _draws()
    ref = _render(params, clumps, fwhm, torch.float64, "cpu", **numerics)
    got = _render(params, clumps, fwhm, torch.float32, device, **numerics)
    assert got.arcs.device.type == device and got.magnification.device.type == device
    a, r = got.arcs.cpu().double().numpy(), ref.arcs.numpy()
    peak = np.abs(r).max(axis=(1, 2, 3))
    assert (peak > 0).all()
    err = np.abs(a - r).max(axis=(1, 2, 3)) / peak
    assert err.max() <= PEAK_TOLERANCE, f"worst arc off by {err.max():.2e} of its peak on {device}"
    np.testing.assert_allclose(got.magnification.cpu().double().numpy(), ref.magnification.numpy(), rtol=1e-3)


def _hosts(n=8, size=41, seed=0):
    rng = np.random.default_rng(seed)
    hosts = rng.normal(0, 0.01, (n, 3, size, size)).astype(np.float32)
    meta = dict(psfsize_r=np.full(n, 1.2), psfdepth_r=np.full(n, 500.0), galaxy_id=np.array([f"g{i}" for i in range(n)]))
    return hosts, meta


@pytest.mark.parametrize("device", DEVICES)
def test_injector_on_device_matches_cpu(device):
    """model1 through ``device``: the same draws, hosts and arc Poisson noise (drawn on the CPU
    generator whatever the render device) as on the CPU, images within float32 tolerance."""
    comp = plugins.components("injector")["model1"]
    hosts, meta = _hosts()
    options = dict(fast_kernel=False, arc_poisson_gain=5.0)
    cpu = comp.impl(comp.Config(**options)).inject(hosts, meta, np.random.default_rng(7))
    dev = comp.impl(comp.Config(device=device, **options)).inject(hosts, meta, np.random.default_rng(7))
    assert dev.n_ok == cpu.n_ok == len(hosts)
    np.testing.assert_array_equal(dev.host_index, cpu.host_index)
    for key in cpu.params:
        np.testing.assert_array_equal(dev.params[key], cpu.params[key])
    peak = np.abs(cpu.arcs).max(axis=(1, 2, 3))[:, None, None, None]
    assert (np.abs(dev.arcs - cpu.arcs) / peak).max() <= PEAK_TOLERANCE
    np.testing.assert_allclose(dev.arc_snr, cpu.arc_snr, rtol=1e-3)
    assert dev.images.dtype == np.float32 and isinstance(dev.images, np.ndarray)


def test_device_option_defaults_to_cpu_and_refuses_missing_cuda():
    comp = plugins.components("injector")["model1"]
    assert comp.Config().device == "cpu"
    assert comp.impl(comp.Config(device="auto")).device.type == ("cuda" if HAS_CUDA else "cpu")
    if not HAS_CUDA:
        with pytest.raises(UserError, match="CUDA"):
            comp.impl(comp.Config(device="cuda"))
    with pytest.raises(Exception, match="device"):
        comp.Config(device="tpu")
