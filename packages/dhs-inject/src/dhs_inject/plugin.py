"""Hook implementations of dhs-inject: this module only wires hooks."""

from __future__ import annotations
