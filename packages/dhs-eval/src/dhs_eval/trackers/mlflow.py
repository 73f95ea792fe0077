"""MLflow tracker: params from the resolved spec, metrics per epoch, the results, and the model
card, report.html and best checkpoint as artifacts. Needs ``pip install 'dhs-eval[mlflow]'``.

Uses ``MlflowClient`` (explicit run ids, no global "active run"), so a sweep's points and a
failing tracker cannot leave each other's runs open. Without ``tracking_uri`` it writes a local
file store in ``<run directory>/mlruns`` (``mlflow ui --backend-store-uri <run>/mlruns`` shows
it); MLflow 3 keeps that store behind ``MLFLOW_ALLOW_FILE_STORE``, which this tracker sets for
file URIs only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dhs_eval.trackers.config import MLflowConfig

#: MLflow's limit on a param value's length (longer values are cut, with a marker)
MAX_PARAM = 500


class MLflowTracker:
    def __init__(self, run: Any, config: MLflowConfig) -> None:
        self.run, self.config = run, config
        self.uri = config.tracking_uri or (Path(run.run_dir).resolve() / "mlruns").as_uri()
        self.client: Any = None
        self.run_id: str | None = None

    def start(self) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ImportError("[trackers.mlflow] needs mlflow: pip install 'dhs-eval[mlflow]'") from exc
        from dhs_core.spec import resolved_dict
        from dhs_eval.trackers import flat_params

        if self.uri.startswith("file:") or "://" not in self.uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        name = self.config.experiment or self.run.name
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        created = self.client.create_run(exp_id, run_name=Path(self.run.run_dir).name,
                                         tags={"dhs.run_dir": str(Path(self.run.run_dir).resolve())})
        self.run_id = created.info.run_id
        params = flat_params(resolved_dict(self.run.spec))
        cut = {k: (v if len(v) <= MAX_PARAM else v[: MAX_PARAM - 3] + "...") for k, v in params.items()}
        items = [Param(k, v) for k, v in sorted(cut.items())]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(epoch)) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def finish(self, results: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        from dhs_core import artifact
        from dhs_core.errors import PluginError
        from dhs_eval.layout import MODEL_CARD, REPORT_HTML

        for k, v in results.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.client.log_metric(self.run_id, k, float(v))
        run_dir = Path(self.run.run_dir)
        files = [run_dir / MODEL_CARD, run_dir / REPORT_HTML]
        if self.config.log_checkpoint:
            try:
                files.append(run_dir / artifact("train", "best"))
            except PluginError:
                pass
        for f in files:
            if f.is_file():
                self.client.log_artifact(self.run_id, str(f))
        self.client.set_terminated(self.run_id, "FINISHED")
        self.run_id = None
