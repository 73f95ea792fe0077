"""Every installed component (of every dhs package present) meets the core contract.

In the per-package environment this covers dhs-core's own components; in `nox -s tests_all`
it covers every built-in plugin.
"""

import pytest

from dhs_core import plugins
from dhs_core.components import KINDS
from dhs_core.testing import check_component, undocumented_fields

ALL = [c for kind in KINDS for c in plugins.components(kind).values()]


@pytest.mark.parametrize("comp", ALL, ids=[f"{c.kind}:{c.name}" for c in ALL])
def test_component_contract(comp):
    check_component(comp)


def test_undocumented_fields_detects_missing_comments():
    from dhs_core import ComponentConfig

    class Documented(ComponentConfig):
        # a comment
        a: int = 1

    class Bare(ComponentConfig):
        b: int = 1

    assert undocumented_fields(Documented) == []
    assert undocumented_fields(Bare) == ["Bare.b"]
