"""The ``[trackers]`` spec section: which experiment trackers observe a run.

Imports only pydantic (a spec is validated before any tracker library is needed)::

    [trackers.tensorboard]
    log_dir = "tensorboard"          # relative to the run directory

    [trackers.mlflow]
    experiment = "lens-finders"      # default: run.name
    # tracking_uri = "http://mlflow.example:5000"   # default: a file store in <run>/mlruns

The section is owned by the report stage but is not part of any input hash: adding or changing a
tracker reruns nothing (trackers observe, they do not change outputs).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TensorBoardConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # directory of the event files; relative paths are inside the run directory
    log_dir: str = "tensorboard"


class MLflowConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # MLflow tracking URI; None: a local file store in <run directory>/mlruns
    tracking_uri: str | None = None
    # experiment name; None: the run's name (run.name)
    experiment: str | None = None
    # also upload train/best.pt (checkpoints can be large on a remote server)
    log_checkpoint: bool = True


class TrackersConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # TensorBoard event files: scalars per epoch, final metrics, ROC and completeness figures
    tensorboard: TensorBoardConfig | None = None
    # MLflow: params from the resolved spec, metrics per epoch, card / report / checkpoint artifacts
    mlflow: MLflowConfig | None = None
