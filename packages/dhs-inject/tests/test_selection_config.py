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
