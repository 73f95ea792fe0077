"""Error types. The CLI maps :class:`UserError` to exit code 2 and prints only its message.

Every message says what the user did, where, and what would be valid.
"""

from __future__ import annotations


class DhsError(Exception):
    """Base class of all dhs errors."""

    exit_code = 1


class UserError(DhsError):
    """Bad usage, invalid spec, unmet pin, bad input data: exit code 2, no traceback."""

    exit_code = 2


class SpecError(UserError):
    """A run spec (file, override or sweep) is invalid."""


class PluginError(UserError):
    """Plugins are inconsistent: a duplicate component name, an unknown hook, a bad registration."""


class RequirementError(UserError):
    """A `[requires]` pin or lock file does not match what is installed."""


class StageError(DhsError):
    """A stage failed at run time (exit code 1)."""


class GatesFailed(DhsError):
    """A run finished but a ``[[gates]]`` entry did not pass (failed, or its metric is missing);
    raised by ``dhs run --gates-fail`` (exit code 1): the run's outputs are complete, its verdict is NO."""


class DataIntegrityError(DhsError):
    """Stored data are damaged (a checksum mismatch, a truncated or missing file that a finished
    stage wrote): a runtime failure, exit code 1, whatever the reader."""


class InterruptedRun(DhsError):
    """The run was stopped by a signal (SIGINT or SIGTERM); exit 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class LifecycleHookWarning(UserWarning):
    """A lifecycle hook (``dhs_run_started``, ``dhs_epoch_end``, ``dhs_run_finished``) raised.

    Those hooks serve loggers and experiment trackers: a tracker that cannot reach its server or
    write its files must never kill the run it observes, so the failure becomes this warning and
    is counted (:func:`dhs_core.plugins.lifecycle_failures`)."""
