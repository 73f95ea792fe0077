"""The ``preprocessing_mismatch`` evaluator: how much does the finder depend on its exact preprocessing?

The held-out labelled cutouts of ``splits`` are scored twice by the run's network: once with the
preprocessor it was trained with (through :class:`dhs_models.inference.Finder`, the path every other
reader of a checkpoint takes) and once with a *mismatched* preprocessor, the ``preprocess`` option.
Both scorings run the same cutouts through the same batches of
:func:`dhs_models.inference.score_images`, so the preprocessor is the only difference and the
comparison is paired: ΔAUC is tested with DeLong's paired test
(:func:`dhs_eval.delong.delong_test`), and recall (of the positives) and FPR (of the negatives) at
each threshold are k/n with Jeffreys intervals, detected meaning ``score > t`` as "p > 0.3" is
published.

This is the published test Q2.4 (docs/inject.md): a model trained with the sky annulus
r = 20-32 px — which on 101-px stamps sits inside the host light — scored with the intended
annulus 32.5-45 px. An AUC drop larger than ``auc_drop_rule`` (0.002) means the annulus choice
matters, i.e. GO for a retrain with the intended annulus.

This module is the ONLY place in dhs where a network is fed cutouts through a preprocessor other
than its training one: everywhere else :func:`dhs_models.inference.load_finder` refuses a
``[preprocess]`` that differs from the checkpoint's, because such scores are not the model's. Here
the mismatch is the measurement, and every key, figure and card heading says "mismatched
preprocessing". An alternate identical to the training preprocessor is refused (the test would
measure nothing), and so is one that cannot be applied to the run's cutouts (e.g. an annulus wider
than the stamp). A checkpoint trained on raw cutouts is accepted: raw vs preprocessed is a mismatch
like any other. Metadata-fusing networks get the manifest columns they were trained with.

Outputs: ``preprocessing_mismatch_scores.parquet`` (both scores per cutout) and
``preprocessing_mismatch.png`` (ROC curves of both scorings, operating points at the thresholds).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_data import layout as data_layout
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.evaluators.tier_a import rate_above
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics.configs import PreprocessingMismatchConfig
from dhs_inject.diagnostics.preprocessing_mismatch_card import card, figure, headline
from dhs_models.inference import build_preprocess, same_preprocess, score_images

SCORES_FILE = "preprocessing_mismatch_scores.parquet"
FIGURE = "preprocessing_mismatch.png"
#: the two scorings, as every key names them
SCORINGS = ("training_preprocess", "mismatched_preprocess")


def _section(entry: Any, where: str) -> dict[str, Any]:
    """A preprocess entry as the resolved ``{"name": ..., options}`` dict the checkpoint records."""
    comp, config = plugins.resolve("preprocessor", entry, where=where)
    return {"name": comp.name, **config.model_dump(mode="json")}


def _draw(label: np.ndarray, n_max: int | None, seed: int) -> np.ndarray:
    """Rows to score: every held-out cutout, or a seeded draw of at most ``n_max`` of each class."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in (1, 0):
        idx = np.flatnonzero(label == cls)
        if n_max is not None and idx.size > n_max:
            idx = rng.choice(idx, n_max, replace=False)
        rows.append(idx)
    return np.sort(np.concatenate(rows))  # manifest order: reads stay local in sharded stores


def _check_applies(preprocess: Any, images: np.ndarray, where: str, section: dict[str, Any]) -> None:
    try:
        out = np.asarray(preprocess(images[:1]))
    except Exception as exc:  # the preprocessor's own reason (an annulus wider than the stamp, ...)
        raise UserError(f"{where} = {section}: cannot be applied to this run's {images.shape[-2]}x"
                        f"{images.shape[-1]}-px cutouts: {exc}") from None
    if out.ndim != 4 or out.shape[:2] != images[:1].shape[:2]:
        raise UserError(f"{where} = {section}: maps a (1, 3, H, W) cutout to shape {out.shape}; a preprocessor "
                        "must return one 3-band cutout per input")


def _score(run_dir: Path, finder: Any, mismatched: Any, rows: np.ndarray, held: pa.Table,
           cfg: PreprocessingMismatchConfig, where: str, section: dict[str, Any]) -> dict[str, np.ndarray]:
    """Both scores of ``rows``, streamed through the store a chunk at a time (memory stays flat)."""
    from dhs_data.stores import open_store

    store = open_store(run_dir / data_layout.DATA_DIR)
    paths = grp._column(held, "cutout_path")
    chunk = 16 * cfg.batch_size
    out: dict[str, list[np.ndarray]] = {key: [] for key in SCORINGS}
    for start in range(0, rows.size, chunk):
        part = rows[start:start + chunk]
        images = store.get_many([str(k) for k in paths[part]])
        if start == 0:
            _check_applies(mismatched, images, where, section)
            # options spelled differently can still be the same preprocessing (a preset and its radii)
            same = finder.inputs(images)
            other = np.asarray(mismatched(images), dtype=np.float32)
            if same.shape == other.shape and np.array_equal(same, other, equal_nan=True):
                raise UserError(f"{where} = {section} gives the network exactly the inputs the training "
                                f"preprocessing {finder.preprocess_section} gives on these cutouts; the mismatched "
                                "preprocessing must differ")
        meta = (grp._meta(held.take(pa.array(part, pa.int64())), finder.metadata_columns)
                if finder.metadata_columns else None)
        out["training_preprocess"].append(finder.score(images, meta=meta, batch_size=cfg.batch_size))
        out["mismatched_preprocess"].append(score_images(finder.model, images, preprocess=mismatched, meta=meta,
                                                         batch_size=cfg.batch_size, device=finder.device))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def compare_scorings(label: np.ndarray, scores: dict[str, np.ndarray], thresholds: tuple[float, ...],
                     auc_drop_rule: float) -> dict[str, Any]:
    """AUCs, paired DeLong test, recall / FPR at each threshold and median positive score of both
    scorings, on the cutouts both scored (a NaN score is a failure, excluded and counted)."""
    from dhs_eval.delong import auc_standard_error, delong_test
    from dhs_eval.metrics import roc_auc

    train, mis = scores["training_preprocess"], scores["mismatched_preprocess"]
    both = np.isfinite(train) & np.isfinite(mis)
    y = label[both]
    out: dict[str, Any] = {"n_paired": int(both.sum()), "n_positives": int(y.sum()),
                           "n_negatives": int(y.size - y.sum()),
                           "n_nan_training_preprocess": int(np.isnan(train).sum()),
                           "n_nan_mismatched_preprocess": int(np.isnan(mis).sum())}
    missing = [w for w, n in (("no positives", out["n_positives"]), ("no negatives", out["n_negatives"])) if not n]
    out["status"] = ("not defined: " + " and ".join(missing) + " scored by both") if missing else "ok"
    for key in SCORINGS:
        s = scores[key][both]
        out[f"auc_{key}"] = roc_auc(y, s) if not missing else math.nan
        out[f"auc_se_{key}"] = auc_standard_error(y, s) if not missing else math.nan
        pos = s[y == 1]
        out[f"median_positive_score_{key}"] = float(np.median(pos)) if pos.size else math.nan
    out["delta_auc"] = out["auc_mismatched_preprocess"] - out["auc_training_preprocess"]
    # z > 0 when the training preprocessing ranks better (a drop under mismatched preprocessing)
    z, p = delong_test(y, train[both], mis[both]) if not missing else (math.nan, math.nan)
    out["delong_z"], out["delong_p"] = z, p
    out["thresholds"] = []
    for t in thresholds:
        row: dict[str, Any] = {"threshold": t}
        for key in SCORINGS:
            s = scores[key][both]
            row[f"recall_{key}"] = rate_above(s[y == 1], t)
            row[f"fpr_{key}"] = rate_above(s[y == 0], t)
        row["delta_recall"] = row["recall_mismatched_preprocess"]["estimate"] - row["recall_training_preprocess"]["estimate"]
        row["delta_fpr"] = row["fpr_mismatched_preprocess"]["estimate"] - row["fpr_training_preprocess"]["estimate"]
        out["thresholds"].append(row)
    drop = -out["delta_auc"]
    out["auc_drop_rule"] = auc_drop_rule
    if math.isfinite(drop):
        out["preprocessing_matters"] = bool(drop > auc_drop_rule)
        out["verdict"] = (f"AUC drop under mismatched preprocessing {drop:.4f} "
                          f"{'>' if drop > auc_drop_rule else '<='} {auc_drop_rule:g}: the preprocessing choice "
                          + ("matters (published Q2.4 rule: GO for a retrain with the intended preprocessing)"
                             if drop > auc_drop_rule else "does not matter at this sample size (NO-GO for a retrain)"))
    else:
        out["preprocessing_matters"], out["verdict"] = None, out["status"]
    return out


class PreprocessingMismatchEvaluator:
    """Held-out cutouts scored with the training and a mismatched preprocessor: paired ΔAUC and Δrecall."""

    name = "preprocessing_mismatch"

    def __init__(self, config: PreprocessingMismatchConfig) -> None:
        self.config = config

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        from dhs_data.manifest import read_manifest

        cfg = self.config
        where = f"evaluate.{self.name}.preprocess"
        run_dir = grp.require_run_dir(context, self.name)
        finder = grp.load_run_model(run_dir, self.name)
        section = _section(cfg.preprocess, where)
        if same_preprocess(finder.preprocess_section, cfg.preprocess):
            raise UserError(f"{where} = {section} is the preprocessing the checkpoint was trained with; the mismatched "
                            "preprocessing must differ (published test Q2.4: a model trained with raw_robust annulus "
                            "[20, 32] scored with annulus [32.5, 45])")
        mismatched = build_preprocess(cfg.preprocess, where=where)
        manifest = read_manifest(run_dir / data_layout.ARTIFACTS["manifest"])
        missing = [c for c in finder.metadata_columns if c not in manifest.column_names]
        if missing:
            raise UserError(f"evaluator {self.name!r}: the model fuses metadata columns {missing} that the manifest lacks")
        held = manifest.filter(pc.is_in(manifest.column("split"), pa.array(list(cfg.splits), pa.string())))
        label = grp._column(held, "label").astype(np.int64)
        rows = _draw(label, cfg.n_max, context.seed)
        context.log(f"{self.name}: scoring {rows.size:,} held-out cutouts with the training and the mismatched "
                    "preprocessing")
        scores = _score(run_dir, finder, mismatched, rows, held, cfg, where, section)
        label = label[rows]
        result: dict[str, Any] = {
            "config": cfg.model_dump(mode="json"),
            "training_preprocess": finder.preprocess_section,
            "mismatched_preprocess": section,
            "counts": {"splits": list(cfg.splits), "available_positives": int((grp._column(held, "label") == 1).sum()),
                       "available_negatives": int((grp._column(held, "label") == 0).sum()), "scored": int(rows.size)},
            **compare_scorings(label, scores, cfg.thresholds, cfg.auc_drop_rule),
            "figures": [],
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        self._write_scores(out_dir / SCORES_FILE, held.take(pa.array(rows, pa.int64())), scores)
        result["scores_file"] = SCORES_FILE
        if cfg.plots and result["status"] == "ok":
            figure(out_dir / FIGURE, label, scores, result)
            result["figures"].append(FIGURE)
        result["headline"] = headline(result)
        result["card"] = card(result)
        return result

    @staticmethod
    def _write_scores(path: Path, rows: pa.Table, scores: dict[str, np.ndarray]) -> None:
        import pyarrow.parquet as pq

        from dhs_core.io import atomic_path

        table = pa.table({"galaxy_id": pc.cast(rows.column("galaxy_id"), pa.string()), "split": rows.column("split"),
                          "label": pc.cast(rows.column("label"), pa.int8()),
                          **{f"score_{k}": pa.array(v, pa.float64()) for k, v in scores.items()}})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
