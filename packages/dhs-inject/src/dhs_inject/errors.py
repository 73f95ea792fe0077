"""Errors of dhs-inject. Bad physical parameters are user errors (CLI exit code 2) and ValueErrors."""

from __future__ import annotations

from dhs_core.errors import UserError


class InjectionParameterError(UserError, ValueError):
    """A lens, source, PSF or noise parameter is outside its physical domain."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise InjectionParameterError(message)
