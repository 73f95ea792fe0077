"""Hook implementations of dhs-data: this module only wires hooks."""

from __future__ import annotations
