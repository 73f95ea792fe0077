"""Every component dhs-inject registers meets dhs-core's contract (frozen Config, unknown options
refused, every field commented, provenance recorded)."""

import pytest

from dhs_core.testing import check_component, components_of

COMPONENTS = components_of("dhs-inject")


def test_registers_components():
    assert COMPONENTS


@pytest.mark.parametrize("comp", COMPONENTS, ids=[f"{c.kind}:{c.name}" for c in COMPONENTS])
def test_core_contract(comp):
    check_component(comp)
