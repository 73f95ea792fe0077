"""The evaluator protocol (component kind ``evaluator``, hook ``register_evaluators``).

An evaluator is registered with its ``Config`` (a frozen :class:`dhs_core.ComponentConfig`, in a
module that imports no numerical or plotting library) and its implementation as a
``"module:attr"`` string, imported the first time the evaluator is used::

    @hookimpl
    def register_evaluators(register):
        register("classification", "dhs_eval.evaluators.classification:ClassificationEvaluator",
                 config=ClassificationConfig)

``impl(config)`` returns an object with one method::

    evaluate(predictions: pyarrow.Table, out_dir: pathlib.Path, context: EvaluationContext) -> dict

* ``predictions`` has one row per scored cutout with at least the columns ``galaxy_id``,
  ``split``, ``label`` (0/1) and ``score`` (sigmoid probability; NaN = failed to score), and,
  when the manifest has them, ``tier``, ``pool``, ``confuser_category``, ``psfsize_r``,
  ``psfdepth_r`` and truth columns such as ``theta_e``. An evaluator must ignore columns it does not
  know and skip (not fail) analyses whose columns are absent.
* ``out_dir`` is where it may write figures and files (``<run>/evaluate``); file names should
  start with the evaluator's name so that two evaluators never collide.
* ``context`` gives the run directory (for evaluators that need other artifacts, e.g. a
  checkpoint), a seed derived for this evaluator, and a logger.

It returns a JSON-serialisable dict (NaN is allowed; it is written as null, "not defined"),
stored in ``evaluate/metrics.json`` under the evaluator's name. An optional ``"headline"`` entry —
a flat mapping of name to float — is reported as the stage's headline metrics. An evaluator
raises :class:`dhs_core.errors.UserError` for bad input it can name (a missing required column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa

from dhs_core.errors import UserError

#: columns every predictions table has
REQUIRED_COLUMNS = ("galaxy_id", "split", "label", "score")


@dataclass(frozen=True)
class EvaluationContext:
    """What an evaluator may know about the run besides the predictions."""

    run_dir: Path | None = None
    seed: int = 0
    log: Callable[[str], None] = field(default=lambda msg: None)


class Evaluator(Protocol):
    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        ...


def check_columns(predictions: pa.Table, evaluator: str, required: tuple[str, ...] = REQUIRED_COLUMNS) -> None:
    missing = [c for c in required if c not in predictions.column_names]
    if missing:
        raise UserError(
            f"evaluator {evaluator!r}: the predictions table lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(predictions.column_names)}"
        )


def column(predictions: pa.Table, name: str) -> Any:
    """A column as a numpy array (object dtype for strings and nulls)."""
    return predictions.column(name).to_numpy(zero_copy_only=False)
