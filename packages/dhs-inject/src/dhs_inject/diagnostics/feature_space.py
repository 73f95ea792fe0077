"""The ``feature_space`` evaluator: does the trained finder see injections as it sees real lenses?

A selection function measured by injection-recovery is only as good as the injections are
realistic *to the network*. This evaluator embeds three held-out groups — real lenses, non-lenses
and injections into other non-lenses (see :mod:`dhs_inject.diagnostics.groups`) — at the
penultimate layer and at the end of each backbone stage, and reports per layer:

* linear-probe ROC AUC (k-fold cross-validated logistic regression,
  :func:`dhs_eval.diagnostics.feature_space.linear_probe_auc`) for injections vs real lenses (the
  sim-to-real gap: 0.5 = indistinguishable), real lenses vs non-lenses and injections vs
  non-lenses;
* the Fréchet distance between the same pairs, "not computable" where a group has n <= dim;
* recall of injections and of real lenses at the finder's threshold, each k/n with a Jeffreys
  interval (a recall gap is the selection-function bias the probe AUC warns about).

Headline: the penultimate-layer probe AUC of injections vs real lenses. Figure:
``feature_space_probe_auc.png`` (probe AUC per layer for each pair).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from dhs_eval.diagnostics.feature_space import frechet_distance, linear_probe_auc
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.metrics import binomial_interval
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics.configs import FeatureSpaceConfig
from dhs_inject.diagnostics.embeddings import PENULTIMATE, extract_embeddings
from dhs_models.inference import probabilities

#: (name, group a, group b): the probe separates b (1) from a (0)
PAIRS = (("injections_vs_positives", "positives", "injections"),
         ("positives_vs_negatives", "negatives", "positives"),
         ("injections_vs_negatives", "negatives", "injections"))


def _rate(scores: np.ndarray, threshold: float, key: str = "recall") -> dict[str, Any]:
    """Fraction of a group called a lens (score >= threshold), k/n with a Jeffreys 95 % interval."""
    k, n = int((scores >= threshold).sum()), int(scores.size)
    if n == 0:
        return {"k": 0, "n": 0, key: math.nan, "interval_95": None, "status": "not defined: empty group"}
    low, high = binomial_interval(k, n, level=0.95, method="jeffreys")
    return {"k": k, "n": n, key: k / n, "interval_95": [float(low), float(high)], "status": "ok"}


def _plot(path: Path, layers: list[str], per_layer: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dhs_eval.plots import save_figure

    fig = Figure(figsize=(6.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    for pair, _, _ in PAIRS:
        y = [per_layer[layer]["probe_auc"][pair]["auc"] for layer in layers]
        ax.plot(x, y, marker="o", label=pair.replace("_", " "))
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_xticks(x, [layer.removeprefix("backbone.") for layer in layers], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("linear-probe ROC AUC (k-fold CV)")
    ax.set_title("separability of groups per layer (0.5 = indistinguishable)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


class FeatureSpaceEvaluator:
    """Probe AUC and Fréchet distance between real lenses, injections and non-lenses per layer."""

    name = "feature_space"

    def __init__(self, config: FeatureSpaceConfig) -> None:
        self.config = config

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        cfg = self.config
        run_dir = grp.require_run_dir(context, self.name)
        run_model = grp.load_run_model(run_dir, self.name)
        groups = grp.draw_groups(run_dir, splits=cfg.splits, n_per_group=cfg.n_per_group, injector=cfg.injector,
                                 metadata_columns=run_model.metadata_columns, seed=context.seed, evaluator=self.name)
        context.log(f"feature_space: embedding {groups.counts['positives']} lenses, {groups.counts['negatives']} "
                    f"non-lenses, {groups.counts['injections']} injections")
        layers = list(cfg.layers) if cfg.layers is not None else None
        embeddings: dict[str, dict[str, np.ndarray]] = {}
        scores: dict[str, np.ndarray] = {}
        for group in ("positives", "negatives", "injections"):
            images = run_model.inputs(getattr(groups, group))
            meta = groups.meta[group] if run_model.metadata_columns else None
            if len(images) == 0:
                embeddings[group], scores[group] = {}, np.zeros(0)
                continue
            try:
                embeddings[group], logits = extract_embeddings(run_model.model, images, layers=layers, meta=meta,
                                                               batch_size=cfg.batch_size)
            except ValueError as exc:
                from dhs_core.errors import UserError

                raise UserError(f"evaluate.{self.name}.layers: {exc}") from None
            layers = layers if layers is not None else [k for k in embeddings[group] if k != PENULTIMATE]
            # the score every other reader of this checkpoint computes (train/scores.parquet, selection)
            scores[group] = probabilities(torch.from_numpy(logits))
        all_layers = [*(layers or []), PENULTIMATE]
        per_layer: dict[str, Any] = {}
        for layer in all_layers:
            dims = {g: e[layer].shape[1] for g, e in embeddings.items() if layer in e}
            entry: dict[str, Any] = {"dim": max(dims.values()) if dims else 0, "probe_auc": {}, "frechet": {}}
            for pair, a, b in PAIRS:
                if layer not in embeddings[a] or layer not in embeddings[b]:
                    reason = "not computable: an empty group"
                    entry["probe_auc"][pair] = {"auc": math.nan, "status": reason}
                    entry["frechet"][pair] = {"distance": math.nan, "status": reason}
                    continue
                entry["probe_auc"][pair] = linear_probe_auc(embeddings[a][layer], embeddings[b][layer],
                                                            n_folds=cfg.n_folds, seed=context.seed)
                entry["frechet"][pair] = frechet_distance(embeddings[a][layer], embeddings[b][layer])
            per_layer[layer] = entry
        result: dict[str, Any] = {
            "config": cfg.model_dump(mode="json"),
            "counts": groups.counts,
            "layers": all_layers,
            "per_layer": per_layer,
            "recall_at_threshold": {"threshold": cfg.threshold,
                                    **{g: _rate(scores[g], cfg.threshold) for g in ("injections", "positives")},
                                    "negatives": _rate(scores["negatives"], cfg.threshold, "fpr")},
            "figures": [],
        }
        if cfg.plots and all_layers:
            out_dir.mkdir(parents=True, exist_ok=True)
            _plot(out_dir / "feature_space_probe_auc.png", all_layers, per_layer)
            result["figures"].append("feature_space_probe_auc.png")
        headline: dict[str, float] = {}
        pen = per_layer[PENULTIMATE]["probe_auc"]
        for key, pair in (("probe_auc_injections_vs_real", "injections_vs_positives"),
                          ("probe_auc_positives_vs_negatives", "positives_vs_negatives")):
            if math.isfinite(pen[pair]["auc"]):
                headline[key] = float(pen[pair]["auc"])
        rec = result["recall_at_threshold"]
        for key, group in (("recall_injections", "injections"), ("recall_positives", "positives")):
            if rec[group]["status"] == "ok":
                headline[key] = float(rec[group]["recall"])
        result["headline"] = headline
        return result
