"""Registry-parametrized contract test over every injector of this distribution, plus grids."""

import os

import numpy as np
import pytest

from dhs_core import plugins
from dhs_inject.grids import build_injection_manifest, grid_configs

INJECTORS = {n: c for n, c in plugins.components("injector").items() if c.distribution == "dhs-inject"}


def _hosts(n=6, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    # elliptical host elongated along x (q = 0.5, phi = 0), plus sky noise
    galaxy = 2.0 * np.exp(-0.5 * (xx**2 / 16 + yy**2 / 4))
    hosts = galaxy[None, None] + rng.normal(0, 0.01, (n, 3, size, size))
    meta = dict(psfsize_r=np.full(n, 1.2), psfdepth_r=np.full(n, 500.0), type_bin=np.array(["DEV"] * n),
                galaxy_id=np.array([f"g{i}" for i in range(n)]))
    return hosts.astype(np.float32), meta


@pytest.mark.parametrize("name", sorted(INJECTORS))
def test_injector_contract(name):
    comp = INJECTORS[name]
    inj = comp.impl(comp.Config(fast_kernel=False))  # the compiled kernel is tested once, below
    hosts, meta = _hosts()
    hosts[2, 1, 3, 3] = np.nan  # a NaN host is a counted failure, never an output
    batch = inj.inject(hosts, meta, np.random.default_rng(1))
    assert batch.failures.get("host_nonfinite", 0) >= 1
    assert 2 not in batch.host_index.tolist()
    assert batch.n_ok == len(batch.images) > 0
    assert batch.images.shape[1:] == (3, 48, 48) and batch.images.dtype == np.float32
    assert np.isfinite(batch.images).all() and np.isfinite(batch.arc_snr).all()
    np.testing.assert_allclose(batch.images - hosts[batch.host_index], batch.arcs, atol=1e-5)
    expected = batch.magnification[:, None] * 10 ** ((22.5 - np.stack(
        [batch.params["src_r_mag"] + batch.params["src_g_r"], batch.params["src_r_mag"],
         batch.params["src_r_mag"] - batch.params["src_r_z"]], 1)) / 2.5)
    np.testing.assert_allclose(batch.injected_flux, expected, rtol=0.05)
    assert all(len(v) == batch.n_ok for v in batch.params.values())


# The adaptive default compiles two more graphs (the pixel pass and the gathered-cell pass):
# minutes on 2 cores with a cold inductor cache, so that case runs with the full accuracy suite.
FULL = os.environ.get("DHS_CONVERGENCE_FULL") == "1"


@pytest.mark.parametrize("numerics", [
    dict(supersample=3, psf_convolution="pixel"),
    pytest.param({}, marks=pytest.mark.skipif(not FULL, reason="compiles the adaptive kernels (minutes); "
                                                                "DHS_CONVERGENCE_FULL=1 runs it")),
], ids=["fixed3", "adaptive"])
def test_injector_fast_kernel_matches_eager_path(numerics):
    """The compiled fused kernels give the eager path's injections.

    Tolerance as against lenstronomy: 1e-3 of each arc's peak. The fixed case reuses the graph
    test_image_vs_lenstronomy.py compiles; a fallback to the eager path would make the test
    vacuous, so it must not happen.
    """
    from dhs_inject import render

    comp = INJECTORS["model1"]
    hosts, meta = _hosts(n=5)
    fast = comp.impl(comp.Config(fast_kernel=True, **numerics)).inject(hosts, meta, np.random.default_rng(3))
    assert render.fast_kernel_failure() is None
    eager = comp.impl(comp.Config(fast_kernel=False, **numerics)).inject(hosts, meta, np.random.default_rng(3))
    assert fast.n_ok == eager.n_ok == 5
    np.testing.assert_array_equal(fast.host_index, eager.host_index)
    peak = np.abs(eager.arcs).max(axis=(1, 2, 3), keepdims=True)
    assert np.all(np.abs(fast.arcs - eager.arcs) <= 1e-3 * peak)
    np.testing.assert_allclose(fast.magnification, eager.magnification, rtol=1e-3)


def test_model2_traces_host_shape():
    from dhs_inject.injectors.model2 import host_shape

    hosts, _ = _hosts(1)
    q, phi = host_shape(hosts[0, 1])
    assert abs(q - 0.5) < 0.05 and min(phi, np.pi - phi) < 0.05


def test_grid_presets_and_manifest():
    assert len(grid_configs("grid_small")["config_id"]) == 48
    assert len(grid_configs("grid_sota")["config_id"]) == 1008
    ids = [f"h{i}" for i in range(200)]
    cfg = grid_configs("grid_small")
    man = build_injection_manifest(ids, cfg, control_frac=0.3, seed=5)
    injected = set(man["galaxy_id"][man["label"] == 1])
    controls = set(man["galaxy_id"][man["label"] == 0])
    assert not injected & controls and len(injected | controls) == 200
    assert len(man["label"]) == len(injected) * 48 + len(controls)
    again = build_injection_manifest(ids[::-1], cfg, control_frac=0.3, seed=5)
    assert set(again["galaxy_id"][again["label"] == 0]) == controls
    paired = build_injection_manifest(ids, cfg, control_frac=0.3, seed=5, paired_controls=True)
    assert set(paired["galaxy_id"][paired["label"] == 0]) == injected


def test_fast_kernel_falls_back_to_eager_path_once_with_reason(monkeypatch, caplog):
    """Where torch.compile cannot work, injections still run (eager path) and the reason is logged once."""
    from dhs_inject import render

    def broken_compiler():
        def compiled(*args):
            raise RuntimeError("no C++ compiler found")
        return compiled

    monkeypatch.setattr(render, "_compiled", lambda fn: broken_compiler())
    monkeypatch.setattr(render, "_fast_kernel_failure", None)
    comp = INJECTORS["model1"]
    hosts, meta = _hosts(n=3)
    with caplog.at_level("WARNING", logger="dhs_inject.render"):
        for _ in range(2):
            batch = comp.impl(comp.Config(fast_kernel=True)).inject(hosts, meta, np.random.default_rng(4))
            assert batch.n_ok == 3 and np.isfinite(batch.images).all()
    assert "no C++ compiler found" in render.fast_kernel_failure()
    assert sum("eager path" in r.getMessage() for r in caplog.records) == 1


def test_registering_dhs_inject_imports_no_torch_scipy_or_matplotlib():
    """Injectors, diagnostics, the synthetic source and the selection stage register from
    torch-free Config modules; their implementations load on first use."""
    import os
    import subprocess
    import sys

    code = ("import sys, dhs_core.plugins as p; [c.Config for k in p.KINDS for c in p.components(k).values()]; "
            "[c.impl for c in p.components('stage').values()]; import dhs_inject.synthetic; "
            "assert {'model1', 'model2', 'model3'} <= set(p.components('injector')); "
            "assert {'feature_space', 'arc_morphology'} <= set(p.components('evaluator')); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'scipy', 'PIL') if m in sys.modules))")
    env = {**os.environ, "DHS_LOAD_PLUGINS": "builtin", "DHS_DISABLE_PLUGINS": "dhs-data,dhs-eval"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_sample_per_pixel_on_an_odd_stamp_is_finite():
    """On an odd stamp a pixel centre is the lens centre, where the SIE ray is singular: with one
    sample per pixel that pixel has no regular sample and is set to 0, never 0 / 0."""
    from dhs_core import plugins

    hosts = np.random.default_rng(1).normal(0, 0.01, (3, 3, 101, 101)).astype(np.float32)
    meta = {"galaxy_id": np.array(["a", "b", "c"]), "psfsize_r": np.full(3, 1.2), "psfdepth_r": np.full(3, 1e3)}
    comp, cfg = plugins.resolve("injector", {"name": "model1", "fast_kernel": False, "supersample": 1})
    batch = comp.impl(cfg).inject(hosts, meta, np.random.default_rng(0))
    assert batch.n_ok == 3 and not batch.failures and np.isfinite(batch.images).all()
