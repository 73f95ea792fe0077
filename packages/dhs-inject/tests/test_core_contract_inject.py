"""Every component dhs-inject registers meets dhs-core's contract (frozen Config, unknown options
refused, every field commented, provenance recorded)."""

from dhs_core.testing import core_contract_test

test_core_contract = core_contract_test("dhs-inject")
