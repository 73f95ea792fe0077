"""Tests a third-party plugin would write: the core contract, then what each component does."""

import numpy as np
import pytest
import torch

from dhs_core import plugins
from dhs_core.testing import check_component


def test_components_are_registered_through_the_entry_point():
    arch = plugins.components("architecture")["example_tiny_cnn"]
    inj = plugins.components("injector")["example_einstein_ring"]
    for comp in (arch, inj):
        assert comp.distribution == "dhs-plugin-example" and comp.version == "0.1.0"
        check_component(comp)


@pytest.mark.parametrize("stamp", [64, 101])
def test_tiny_cnn_forward_backward(stamp):
    comp = plugins.components("architecture")["example_tiny_cnn"]
    model = comp.impl(comp.Config(width=4))
    x = torch.randn(2, 3, stamp, stamp, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _hosts(n, stamp, rng):
    # pure sky: Gaussian noise at a DR10-like level (nanomaggies)
    return rng.normal(0.0, 0.01, (n, 3, stamp, stamp)).astype(np.float32)


def test_einstein_ring_sources_are_nearly_aligned_and_highly_magnified():
    rng = np.random.default_rng(3)
    n, stamp = 12, 48
    hosts = _hosts(n, stamp, rng)
    meta = {"psfsize_r": np.full(n, 1.2)}
    ring = plugins.components("injector")["example_einstein_ring"]
    base = plugins.components("injector")["model1"]
    prior = {"theta_e": (1.0, 1.5)}
    rings = ring.impl(ring.Config(max_beta_frac=0.1, prior=prior, fast_kernel=False)).inject(hosts, meta, np.random.default_rng(1))
    ordinary = base.impl(base.Config(prior=prior, fast_kernel=False)).inject(hosts, meta, np.random.default_rng(1))
    assert rings.n_ok == n and np.isfinite(rings.images).all()
    assert (rings.params["beta_frac"] <= 0.1).all()
    offset = np.hypot(rings.params["src_x"] - rings.params["lens_x"], rings.params["src_y"] - rings.params["lens_y"])
    np.testing.assert_allclose(offset, rings.params["beta_frac"] * rings.params["theta_e"], rtol=1e-9)
    # a source near the optical axis is magnified much more than one drawn out to the caustic
    assert np.median(rings.magnification) > 2 * np.median(ordinary.magnification)
