"""The ``classification`` evaluator: the operating regime first, then AUC, calibration and strata.

Per split (test first, then val) it reports counts, NaN scores (excluded and counted), ROC AUC with
its DeLong standard error and a stratified bootstrap interval, McClish partial AUCs, the TPR-at-FPR
and FPR-at-TPR tables with thresholds, precision/recall/FPR at the decision threshold, ECE/MCE
overall and on the positives, and recall per tier / FPR per pool and confuser category / both per
theta_E, PSF and depth bin when those columns exist. Figures: ``classification_roc.png`` (log-FPR
axis, operating points) and ``classification_calibration_<split>.png``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dhs_eval import metrics, plots, strata
from dhs_eval._fastroc import fast_auc
from dhs_eval._inputs import scored
from dhs_eval.errors import NaNScoresWarning
from dhs_eval.evaluators.base import EvaluationContext, check_columns, column
from dhs_eval.evaluators.config import ClassificationConfig

#: continuous columns stratified into quantile bins when present (truth or manifest)
BINNED_COLUMNS = ("theta_e", "psfsize_r", "psfdepth_r")


def _maybe(value: float) -> float | None:
    return value if math.isfinite(value) else None


class ClassificationEvaluator:
    """AUC, pAUC, TPR@FPR / FPR@TPR tables, calibration, bootstrap and DeLong intervals, strata."""

    name = "classification"

    def __init__(self, config: ClassificationConfig) -> None:
        self.config = config

    def _bootstrap(self, statistic: Any, y: np.ndarray, s: np.ndarray, seed: int) -> dict[str, Any] | None:
        if self.config.n_bootstrap == 0 or scored(y, s).undefined_reason():
            return None
        ci = metrics.bootstrap_ci(statistic, y, s, n_resamples=self.config.n_bootstrap,
                                  level=self.config.level, seed=seed, strata=y)
        return ci.as_dict()

    def _split(self, table: pa.Table, split: str, seed: int) -> dict[str, Any]:
        cfg = self.config
        y = column(table, "label").astype(np.int64)
        s = column(table, "score").astype(np.float64)
        nan = np.isnan(s)
        out: dict[str, Any] = {"n": int(y.size), "n_nan_scores": int(nan.sum())}
        yv, sv = y[~nan], s[~nan]
        out.update(n_positives=int(yv.sum()), n_negatives=int(yv.size - yv.sum()))
        reason = scored(yv, sv).undefined_reason()
        out["status"] = reason or "ok"
        out["auc"] = metrics.roc_auc(yv, sv)
        out["auc_se_delong"] = metrics.auc_standard_error(yv, sv)
        out["auc_bootstrap"] = self._bootstrap(fast_auc, yv, sv, seed)
        out["pauc"] = {}
        for i, max_fpr in enumerate(cfg.pauc_max_fprs):
            def stat(a: np.ndarray, b: np.ndarray, m: float = max_fpr) -> float:
                return fast_auc(a, b, m)
            out["pauc"][f"{max_fpr:g}"] = {"max_fpr": max_fpr, "value": metrics.partial_auc(yv, sv, max_fpr),
                                           "bootstrap": self._bootstrap(stat, yv, sv, seed + 1 + i)}
        kw = {"level": cfg.level, "method": cfg.interval_method}
        out["tpr_at_fpr"] = metrics.tpr_at_fpr_table(yv, sv, cfg.fpr_targets, **kw)
        out["fpr_at_tpr"] = metrics.fpr_at_tpr_table(yv, sv, cfg.tpr_targets, **kw)
        out["at_threshold"] = metrics.rates_at_threshold(yv, sv, cfg.threshold)
        ece, mce = metrics.calibration_error(yv, sv, cfg.n_calibration_bins)
        pos = yv == 1
        ece_pos, mce_pos = (metrics.calibration_error(yv[pos], sv[pos], cfg.n_calibration_bins,
                                                      require_both_classes=False) if pos.any() else (math.nan,) * 2)
        out["calibration"] = {"n_bins": cfg.n_calibration_bins, "ece": ece, "mce": mce,
                              "ece_positives": ece_pos, "mce_positives": mce_pos,
                              "status": reason or "ok"}
        out["strata"] = self._strata(table, y, s)
        return out

    def _strata(self, table: pa.Table, y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
        cfg = self.config
        kw = {"level": cfg.level, "method": cfg.interval_method}
        out: dict[str, Any] = {}
        names = table.column_names
        if "tier" in names:
            out["recall_by_tier"] = strata.recall_by(y, s, column(table, "tier"), cfg.threshold,
                                                     order=("A", "B"), **kw)
        if "pool" in names:
            out["fpr_by_pool"] = strata.fpr_by(y, s, column(table, "pool"), cfg.threshold, **kw)
        if "confuser_category" in names:
            out["fpr_by_confuser_category"] = strata.fpr_by(y, s, column(table, "confuser_category"),
                                                            cfg.threshold, **kw)
        for name in BINNED_COLUMNS:
            if name in names:
                values = column(table, name).astype(np.float64)
                if np.isfinite(values).any():
                    out[f"by_{name}"] = strata.binned(y, s, values, name, cfg.threshold,
                                                      n_bins=cfg.n_strata_bins, **kw)
        return out

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        check_columns(predictions, self.name)
        split_col = column(predictions, "split").astype(str)
        result: dict[str, Any] = {"config": self.config.model_dump(mode="json"), "splits": {}}
        curves, points, figures = [], [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NaNScoresWarning)  # NaNs are counted in n_nan_scores
            for i, split in enumerate(self.config.splits):
                table = predictions.filter(pa.array(split_col == split))
                if table.num_rows == 0:
                    result["splits"][split] = {"n": 0, "status": f"not run: no cutouts in split {split!r}"}
                    continue
                context.log(f"classification: {split} split, {table.num_rows:,} cutouts")
                res = self._split(table, split, context.seed + 1000 * i)
                result["splits"][split] = res
                if self.config.plots and res["status"] == "ok":
                    figures.append(self._plots(table, split, res, out_dir, curves, points))
            if curves:
                figures.insert(0, plots.roc_figure(out_dir / "classification_roc.png", curves, points).name)
        result["figures"] = figures
        result["headline"] = self._headline(result["splits"])
        return result

    def _plots(self, table: pa.Table, split: str, res: dict, out_dir: Path, curves: list, points: list) -> str:
        """Write the calibration figure of one split and collect its ROC curve and operating points."""
        y = column(table, "label").astype(np.int64)
        s = column(table, "score").astype(np.float64)
        fpr, tpr, _ = metrics.roc_points(y, s)
        curves.append((f"{split} (AUC {res['auc']:.4f})", fpr, tpr, res["n_negatives"]))
        for row in res["tpr_at_fpr"]:
            if row["status"] == "ok":
                points.append((f"{split} TPR@FPR {row['target_fpr']:g}", row["achieved_fpr"], row["tpr"]))
        bins = metrics.reliability(y, s, self.config.n_calibration_bins)
        name = f"classification_calibration_{split}.png"
        cal = res["calibration"]
        plots.calibration_figure(out_dir / name, bins, f"{split}: ECE {cal['ece']:.4f}, MCE {cal['mce']:.4f}")
        return name

    def _headline(self, splits: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for split, res in splits.items():
            if res.get("status") != "ok":
                continue
            out[f"{split}_auc"] = res["auc"]
            for key, p in res["pauc"].items():
                out[f"{split}_pauc_{key}"] = p["value"]
            for row in res["tpr_at_fpr"]:
                if row["status"] == "ok":
                    out[f"{split}_tpr_at_fpr_{row['target_fpr']:g}"] = row["tpr"]
            out[f"{split}_ece"] = res["calibration"]["ece"]
        return {k: v for k, v in out.items() if _maybe(v) is not None}
