"""Errors raised for bad evaluation input.

:class:`MetricInputError` is both a :class:`dhs_core.errors.UserError` (the CLI reports it with
exit code 2 and no traceback) and a :class:`ValueError` (what numerical code expects).
"""

from __future__ import annotations

from dhs_core.errors import UserError


class MetricInputError(UserError, ValueError):
    """Labels, scores or probabilities that a metric cannot use (wrong shape, length, range)."""


class NaNScoresWarning(RuntimeWarning):
    """Some scores were NaN and were left out of a metric (they are counted, never imputed)."""
