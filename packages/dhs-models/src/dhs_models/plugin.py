"""Hook implementations of dhs-models: this module only wires hooks."""

from __future__ import annotations
