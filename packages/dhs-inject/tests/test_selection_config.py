"""The [selection_function] section and stage: theta_E grids, bad specs, the default threshold rule
and the stage contract. (The statistics are dhs-eval's, tested there.)"""

from __future__ import annotations

import pytest

import dhs_core
from dhs_core import plugins
from dhs_core.errors import SpecError
from dhs_core.testing import check_component, undocumented_fields
from dhs_inject.selection.config import SelectionFunctionConfig, ThetaEGrid

STAGES = {n: c for n, c in plugins.components("stage").items() if c.distribution == "dhs-inject"}


def test_theta_e_grid_values_include_stop():
    assert ThetaEGrid(start=0.5, stop=1.5, step=0.25).values() == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert ThetaEGrid(start=0.3, stop=0.9, step=0.3).values() == [0.3, 0.6, 0.9]


@pytest.mark.parametrize("section, where", [
    ({"theta_e": {"start": 0.5, "stop": 2.0, "step": 0.0}}, "step"),
    ({"theta_e": {"start": 0.5, "stop": 2.0, "step": -0.5}}, "step"),
    ({"theta_e": {"start": 2.0, "stop": 0.5, "step": 0.5}}, "below start"),
    ({"source_mag_edges": [24.0]}, "at least two edges"),
    ({"source_mag_edges": [24.0, 24.0]}, "increase strictly"),
    ({"psfsize_r_edges": []}, "at least two edges"),
    ({"psfdepth_r_edges": [400.0, 100.0]}, "increase strictly"),
    # edges in the wrong unit name the unit expected
    ({"psfdepth_r_edges": [24.0, 24.5, 25.0]}, "depth_mag_edges"),
    ({"depth_mag_edges": [400.0, 1600.0]}, "AB mag"),
    ({"psfsize_r_edges": [3.0, 5.0, 7.0]}, "pixels"),
    ({"theta_e": {"start": 2.0, "stop": 12.0, "step": 2.0}}, "arcsec"),
    ({"source_mag_edges": [0.3, 0.5]}, "AB"),
    ({"beta_frac_edges": [0.0, 0.5, 2.0]}, "theta_E"),
    ({"depth_mag_edges": [24.0, 25.0], "psfdepth_r_edges": [400.0, 1600.0]}, "not both"),
    ({"thresholds": {"fixed": [0.5, 1.5]}}, "(0, 1)"),
    ({"thresholds": {"fpr": [0.0]}}, "(0, 1)"),
    ({"thresholds": {}}, "at least one"),
    ({"thresholds": {"fixed": [0.5]}, "target_fpr": 1e-3}, "not both"),
    ({"priors": ["nope"]}, "unknown preset"),
    ({"priors": [{"name": "x", "theta_e": [2.0, 1.0], "beta_frac": [0.1, 0.5], "src_r_mag": [23.0, 25.0]}]},
     "lo <= hi"),
    ({"priors": ["broad", "broad"]}, "repeat"),
    ({"sensitivity": [{"name": "a"}, {"name": "a"}]}, "repeat"),
    ({"per_cell": 0}, "per_cell"),
    ({"target_fpr": 1e-3, "threshold": 0.5}, "not both"),
    ({"injector": {"name": "no_such_injector"}}, "model1"),
])
def test_bad_selection_function_section_is_a_spec_error(tmp_path, section, where):
    spec = {"run": {"name": "bad", "seed": 1, "out_dir": str(tmp_path / "run")}, "selection_function": section}
    with pytest.raises(SpecError) as info:
        dhs_core.run(spec)
    assert "selection_function" in str(info.value) and where in str(info.value)
    assert not (tmp_path / "run" / "selection_function").exists()


def test_default_threshold_rule():
    assert SelectionFunctionConfig().target_fpr == 1e-3 and SelectionFunctionConfig().threshold is None
    fixed = SelectionFunctionConfig(threshold=0.7)
    assert fixed.target_fpr is None and fixed.threshold == 0.7


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_contract(name):
    comp = STAGES[name]
    check_component(comp)
    for section in comp.impl.sections.values():
        assert not undocumented_fields(section.type), undocumented_fields(section.type)
    assert comp.impl.trigger in comp.impl.sections


def test_depth_conversion_matches_the_closed_form():
    """m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth)) both ways, against the closed form."""
    import numpy as np

    from dhs_inject.depth import m5_to_psfdepth, psfdepth_to_m5

    for m5 in (23.0, 24.0, 24.5, 25.5):
        # closed form: sigma = 10^(-(m5 - 22.5) / 2.5) / 5 nanomaggy, psfdepth = 1 / sigma^2
        assert m5_to_psfdepth(m5) == pytest.approx(25.0 * 10 ** (0.8 * (m5 - 22.5)), rel=1e-12)
        assert float(psfdepth_to_m5(m5_to_psfdepth(m5))) == pytest.approx(m5, abs=1e-12)
    # 5 sigma at 1 nanomaggy (22.5 mag) needs sigma = 0.2, psfdepth 25
    assert float(psfdepth_to_m5(25.0)) == pytest.approx(22.5, abs=1e-12)
    assert np.isnan(psfdepth_to_m5(0.0))


def test_grid_bins_hosts_by_5_sigma_depth_in_magnitudes():
    import numpy as np

    from dhs_inject.depth import m5_to_psfdepth
    from dhs_inject.selection.grid import build_grid

    depth = np.array([m5_to_psfdepth(m) for m in (24.2, 24.7, 25.2, 23.0, 25.6)])
    cfg = SelectionFunctionConfig(depth_mag_edges=[24.0, 24.5, 25.0, 25.5], psfsize_r_edges=[0.5, 2.0])
    grid = build_grid(cfg, np.full(5, 1.0), depth)
    assert grid.depth_bin.tolist() == [0, 1, 2, -1, -1]  # outside the edges: in no cell
    inverse = SelectionFunctionConfig(psfdepth_r_edges=[m5_to_psfdepth(m) for m in (24.0, 24.5, 25.0, 25.5)],
                                      psfsize_r_edges=[0.5, 2.0])
    assert build_grid(inverse, np.full(5, 1.0), depth).depth_bin.tolist() == [0, 1, 2, -1, -1]
    cell = grid.cells()[0]
    assert (cell["depth_m5_lo"], cell["depth_m5_hi"]) == (24.0, 24.5)
    assert cell["psfdepth_r_lo"] == pytest.approx(m5_to_psfdepth(24.0))


def test_beta_frac_bins_are_a_grid_axis_that_pins_the_prior():
    from dhs_inject.selection.cell import cell_injector_config

    cfg = SelectionFunctionConfig(beta_frac_edges=[0.1, 0.5, 1.0], psfsize_r_edges=[0.5, 2.0],
                                  theta_e={"start": 1.0, "stop": 1.0, "step": 0.5}, source_mag_edges=[22.0, 23.0])
    import numpy as np

    from dhs_inject.selection.grid import build_grid

    cells = build_grid(cfg, np.ones(3), np.full(3, 1000.0)).cells()
    assert [(c["beta_frac_lo"], c["beta_frac_hi"]) for c in cells] == [(0.1, 0.5), (0.5, 1.0)]
    _, injector = cell_injector_config({"name": "model1"}, 1.0, 22.0, 23.0, (0.5, 1.0))
    assert tuple(injector.prior.beta_frac) == (0.5, 1.0)


def test_hosts_are_drawn_without_replacement_while_the_pool_allows():
    import numpy as np

    from dhs_inject.selection.grid import draw_hosts

    pool = np.arange(100, 150)
    for seed in range(5):
        chosen = draw_hosts(pool, 50, seed)
        assert len(set(chosen.tolist())) == 50  # every host once
        few = draw_hosts(pool, 120, seed)  # 50 hosts for 120 slots: each used 2 or 3 times
        counts = np.bincount(few - 100, minlength=50)
        assert len(few) == 120 and set(counts.tolist()) <= {2, 3} and counts.sum() == 120
    assert draw_hosts(np.array([], dtype=int), 10, 0).size == 0


def test_thresholds_table_lists_every_threshold_primary_first():
    cfg = SelectionFunctionConfig(thresholds={"fixed": [0.3, 0.5, 0.7], "fpr": [1e-3, 1e-4]})
    assert cfg.target_fpr is None and cfg.threshold is None
    assert [n for n, _, _ in cfg.threshold_entries()] == ["p>=0.3", "p>=0.5", "p>=0.7", "fpr=0.001", "fpr=0.0001"]
    assert SelectionFunctionConfig().threshold_entries() == [("fpr=0.001", "target_fpr", 1e-3)]
    assert SelectionFunctionConfig(threshold=1.0).threshold_entries() == [("p>=1", "fixed", 1.0)]


def test_perturbations_keep_every_draw_but_the_perturbed_one():
    """Common random numbers: the perturbed parameter changes as stated, nothing else does, and
    the drawn parameters are not modified."""
    import numpy as np

    from dhs_inject.injectors.configs import Perturbation
    from dhs_inject.priors import PriorConfig, draw_clumps, draw_parameters, perturb_parameters

    prior = PriorConfig()
    rng = np.random.default_rng(3)
    params = draw_parameters(prior, 50, rng)
    clumps, _, _ = draw_clumps(prior, params["src_r_e"], rng)
    before = {k: v.copy() for k, v in params.items()}
    same, same_clumps, scale = perturb_parameters(Perturbation(), prior, params, clumps)
    assert same is params and same_clumps is clumps and scale == 1.0
    pert = Perturbation(src_r_e_scale=1.3, src_g_r_shift=0.2, lens_q=(0.7, 1.0), psf_fwhm_scale=0.9)
    p, c, scale = perturb_parameters(pert, prior, params, clumps)
    assert scale == 0.9
    np.testing.assert_allclose(p["src_r_e"], 1.3 * before["src_r_e"])
    np.testing.assert_allclose(c[..., 1:4], 1.3 * clumps[..., 1:4])
    np.testing.assert_allclose(p["src_g_r"], before["src_g_r"] + 0.2)
    lo, hi = prior.lens_q  # the same quantile in the new range
    np.testing.assert_allclose((p["lens_q"] - 0.7) / 0.3, (before["lens_q"] - lo) / (hi - lo))
    for key in set(p) - {"src_r_e", "src_g_r", "lens_q"}:
        np.testing.assert_array_equal(p[key], before[key])
    for key in before:
        np.testing.assert_array_equal(params[key], before[key])
