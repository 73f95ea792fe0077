"""Hook implementations of dhs-cli: this module only wires hooks."""

from __future__ import annotations
