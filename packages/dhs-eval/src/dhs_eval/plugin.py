"""Hook implementations of dhs-eval: this module only wires hooks."""

from __future__ import annotations
