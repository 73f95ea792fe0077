"""The ``feature_space`` evaluator: does the trained finder see injections as it sees real lenses?

A selection function measured by injection-recovery is only as good as the injections are
realistic *to the network*. This evaluator embeds held-out groups (see
:mod:`dhs_inject.diagnostics.groups`) — real lenses (``positives``), Tier-A real lenses
(``tier_a``), non-lenses (``negatives``), injections into other non-lenses drawn from the injector's
prior (``injections``) and, with ``beta_frac_split``, injections into the same hosts with beta_frac
below / above the split (``injections_low_bf`` / ``injections_high_bf``) — at the penultimate layer
and at the end of each backbone stage, and reports:

* per layer, for each pair of :data:`PAIRS`: the linear-probe ROC AUC (k-fold cross-validated
  logistic regression, :func:`dhs_eval.diagnostics.feature_space.linear_probe_auc`; 0.5 = the
  network sees the two groups alike) and the Fréchet distance ("not computable" where a group has
  n <= dim, or is empty);
* per group: n and the median score (the published Q2.2 medians: Tier-A 0.995, low-bf 0.107,
  high-bf 0.017, negatives 1.5e-5), and recall (FPR for non-lenses) at ``threshold``, k/n with a
  Jeffreys interval;
* the published realism-gap rule at the penultimate layer (:func:`realism_rule`);
* a 2-D map of the penultimate layer (:func:`~dhs_inject.diagnostics.embeddings.project_2d`: UMAP
  where umap-learn imports, PCA otherwise; the method used is recorded).

Headline: the penultimate-layer probe AUC of injections vs real lenses, and the rule's numbers.
Figures: ``feature_space_probe_auc.png`` (probe AUC per layer for each pair) and
``feature_space_embedding.png``. The model card gets the group, pair and rule tables
(:mod:`dhs_inject.diagnostics.feature_space_card`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from dhs_core.errors import UserError
from dhs_eval.diagnostics.feature_space import frechet_distance, linear_probe_auc
from dhs_eval.evaluators.base import EvaluationContext
from dhs_eval.metrics import binomial_interval
from dhs_inject.diagnostics import groups as grp
from dhs_inject.diagnostics.configs import FeatureSpaceConfig
from dhs_inject.diagnostics.embeddings import PENULTIMATE, extract_embeddings, project_2d, umap_available
from dhs_inject.diagnostics.feature_space_card import card, plot_embedding, rule_text
from dhs_models.inference import probabilities

#: (name, group a, group b): the probe separates b (1) from a (0)
PAIRS = (("injections_vs_positives", "positives", "injections"),
         ("positives_vs_negatives", "negatives", "positives"),
         ("injections_vs_negatives", "negatives", "injections"),
         ("injections_vs_tier_a", "tier_a", "injections"),
         ("injections_low_bf_vs_tier_a", "tier_a", "injections_low_bf"),
         ("injections_high_bf_vs_tier_a", "tier_a", "injections_high_bf"),
         ("tier_a_vs_negatives", "negatives", "tier_a"))
EMBEDDING_FIGURE = "feature_space_embedding.png"
PROBE_FIGURE = "feature_space_probe_auc.png"


def _rate(scores: np.ndarray, threshold: float, key: str = "recall") -> dict[str, Any]:
    """Fraction of a group called a lens (score >= threshold), k/n with a Jeffreys 95 % interval."""
    k, n = int((scores >= threshold).sum()), int(scores.size)
    if n == 0:
        return {"k": 0, "n": 0, key: math.nan, "interval_95": None, "status": "not defined: empty group"}
    low, high = binomial_interval(k, n, level=0.95, method="jeffreys")
    return {"k": k, "n": n, key: k / n, "interval_95": [float(low), float(high)], "status": "ok"}


def _group_summary(scores: np.ndarray, status: str | None) -> dict[str, Any]:
    if scores.size == 0:
        return {"n": 0, "median_score": math.nan, "status": status or "empty"}
    return {"n": int(scores.size), "median_score": float(np.median(scores)), "status": "ok"}


def realism_rule(frechet_real_vs_injections: dict[str, Any], frechet_real_vs_negatives: dict[str, Any],
                 probe_injections_vs_real: dict[str, Any], *, ratio_rule: float, probe_rule: float) -> dict[str, Any]:
    """The published rule (Q2.2) for one injection group: a realism gap when FD(real, injections) /
    FD(real, non-lenses) > ``ratio_rule`` or the probe AUC (injections vs real) > ``probe_rule``.

    The rule is an "or", so either criterion alone can show a gap, but "no realism gap" needs both
    to be computable and below their limits; otherwise the verdict is "not computable" with why.
    """
    fd_inj, fd_neg = frechet_real_vs_injections, frechet_real_vs_negatives
    out: dict[str, Any] = {"frechet_real_vs_injections": fd_inj.get("distance", math.nan),
                           "frechet_real_vs_negatives": fd_neg.get("distance", math.nan),
                           "frechet_ratio": math.nan, "probe_auc": probe_injections_vs_real.get("auc", math.nan)}
    reasons: list[str] = []
    if fd_inj.get("status") != "ok" or fd_neg.get("status") != "ok":
        bad = fd_inj if fd_inj.get("status") != "ok" else fd_neg
        reasons.append(f"Fréchet ratio {bad.get('status', 'not computable')}")
    elif not fd_neg["distance"] > 0:
        reasons.append("Fréchet ratio not computable: FD(real, non-lenses) = 0")
    else:
        out["frechet_ratio"] = fd_inj["distance"] / fd_neg["distance"]
    if probe_injections_vs_real.get("status") != "ok":
        reasons.append(f"probe AUC {probe_injections_vs_real.get('status', 'not computable')}")
    ratio, auc = out["frechet_ratio"], out["probe_auc"]
    over = [f"Fréchet ratio {ratio:.3g} > {ratio_rule:g}"] if math.isfinite(ratio) and ratio > ratio_rule else []
    over += [f"probe AUC {auc:.3g} > {probe_rule:g}"] if probe_injections_vs_real.get("status") == "ok" \
        and auc > probe_rule else []
    if over:
        out.update(verdict="realism gap", status="ok", because=over)
    elif reasons:
        out.update(verdict="not computable", status="; ".join(reasons))
    else:
        out.update(verdict="no realism gap", status="ok")
    return out


def _plot_probe(path: Path, layers: list[str], per_layer: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dhs_eval.plots import save_figure

    fig = Figure(figsize=(6.5, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    for pair, _, _ in PAIRS:
        y = [per_layer[layer]["probe_auc"][pair]["auc"] for layer in layers]
        if any(math.isfinite(v) for v in y):  # a pair with an empty group has nothing to draw
            ax.plot(x, y, marker="o", label=pair.replace("_", " "))
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_xticks(x, [layer.removeprefix("backbone.") for layer in layers], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("linear-probe ROC AUC (k-fold CV)")
    ax.set_title("separability of groups per layer (0.5 = indistinguishable)", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


class FeatureSpaceEvaluator:
    """Probe AUC and Fréchet distance between real lenses, injections and non-lenses per layer."""

    name = "feature_space"

    def __init__(self, config: FeatureSpaceConfig) -> None:
        self.config = config

    def evaluate(self, predictions: pa.Table, out_dir: Path, context: EvaluationContext) -> dict[str, Any]:
        cfg = self.config
        run_dir = grp.require_run_dir(context, self.name)
        if cfg.embedding_method == "umap" and not umap_available():
            raise UserError(f"evaluate.{self.name}.embedding_method = \"umap\" needs umap-learn, which does not "
                            "import here; install it (pip install umap-learn) or use \"auto\" (UMAP when "
                            "available, PCA otherwise) or \"pca\"")
        run_model = grp.load_run_model(run_dir, self.name)
        groups = grp.draw_groups(run_dir, splits=cfg.splits, n_per_group=cfg.n_per_group, injector=cfg.injector,
                                 metadata_columns=run_model.metadata_columns, seed=context.seed, evaluator=self.name,
                                 tier_a=True, beta_frac_split=cfg.beta_frac_split)
        counts = groups.counts
        context.log("feature_space: embedding " + ", ".join(f"{len(getattr(groups, g))} {g}" for g in grp.GROUPS))
        layers = list(cfg.layers) if cfg.layers is not None else None
        embeddings: dict[str, dict[str, np.ndarray]] = {}
        scores: dict[str, np.ndarray] = {}
        for group in grp.GROUPS:
            images = run_model.inputs(getattr(groups, group))
            meta = groups.meta.get(group) if run_model.metadata_columns else None
            if len(images) == 0:
                embeddings[group], scores[group] = {}, np.zeros(0)
                continue
            try:
                embeddings[group], logits = extract_embeddings(run_model.model, images, layers=layers, meta=meta,
                                                               batch_size=cfg.batch_size)
            except ValueError as exc:
                raise UserError(f"evaluate.{self.name}.layers: {exc}") from None
            layers = layers if layers is not None else [k for k in embeddings[group] if k != PENULTIMATE]
            # the score every other reader of this checkpoint computes (train/scores.parquet, selection)
            scores[group] = probabilities(torch.from_numpy(logits))
        all_layers = [*(layers or []), PENULTIMATE]
        per_layer = {layer: self._layer(layer, embeddings, context.seed) for layer in all_layers}
        status = {"tier_a": counts.get("tier_a_status"),
                  **{g: (counts.get("beta_frac") or {}).get("status", "not drawn: beta_frac_split = none")
                     for g in ("injections_low_bf", "injections_high_bf")}}
        summaries = {g: _group_summary(scores[g], None if scores[g].size else status.get(g)) for g in grp.GROUPS}
        rule_groups = ("injections_low_bf", "injections_high_bf") if cfg.beta_frac_split is not None \
            else ("injections",)
        result: dict[str, Any] = {
            "config": cfg.model_dump(mode="json"),
            "counts": counts,
            "groups": summaries,
            "layers": all_layers,
            "per_layer": per_layer,
            "recall_at_threshold": {"threshold": cfg.threshold,
                                    **{g: _rate(scores[g], cfg.threshold) for g in grp.GROUPS if g != "negatives"},
                                    "negatives": _rate(scores["negatives"], cfg.threshold, "fpr")},
            "realism_rule": self._rule(per_layer[PENULTIMATE], rule_groups),
            "figures": [],
        }
        result["embedding"] = self._embedding(embeddings, out_dir, context.seed) if cfg.plots else \
            {"method": None, "status": "not drawn: plots = false"}
        if cfg.plots and all_layers:
            out_dir.mkdir(parents=True, exist_ok=True)
            _plot_probe(out_dir / PROBE_FIGURE, all_layers, per_layer)
            result["figures"].append(PROBE_FIGURE)
        if result["embedding"].get("status") == "ok":
            result["figures"].append(EMBEDDING_FIGURE)
        result["headline"] = _headline(result, rule_groups)
        result["card"] = card(result, PAIRS)
        return result

    def _layer(self, layer: str, embeddings: dict[str, dict[str, np.ndarray]], seed: int) -> dict[str, Any]:
        dims = {g: e[layer].shape[1] for g, e in embeddings.items() if layer in e}
        entry: dict[str, Any] = {"dim": max(dims.values()) if dims else 0, "probe_auc": {}, "frechet": {}}
        for pair, a, b in PAIRS:
            if layer not in embeddings[a] or layer not in embeddings[b]:
                reason = "not computable: an empty group"
                entry["probe_auc"][pair] = {"auc": math.nan, "status": reason}
                entry["frechet"][pair] = {"distance": math.nan, "status": reason}
                continue
            entry["probe_auc"][pair] = linear_probe_auc(embeddings[a][layer], embeddings[b][layer],
                                                        n_folds=self.config.n_folds, seed=seed)
            entry["frechet"][pair] = frechet_distance(embeddings[a][layer], embeddings[b][layer])
        return entry

    def _rule(self, penultimate: dict[str, Any], rule_groups: tuple[str, ...]) -> dict[str, Any]:
        cfg = self.config
        comparisons = {g: realism_rule(penultimate["frechet"][f"{g}_vs_tier_a"],
                                       penultimate["frechet"]["tier_a_vs_negatives"],
                                       penultimate["probe_auc"][f"{g}_vs_tier_a"],
                                       ratio_rule=cfg.frechet_ratio_rule, probe_rule=cfg.probe_auc_rule)
                       for g in rule_groups}
        verdicts = [c["verdict"] for c in comparisons.values()]
        overall = ("realism gap" if "realism gap" in verdicts else
                   "no realism gap" if all(v == "no realism gap" for v in verdicts) else "not computable")
        return {"layer": PENULTIMATE, "real_group": "tier_a", "rule": rule_text(cfg),
                "frechet_ratio_rule": cfg.frechet_ratio_rule, "probe_auc_rule": cfg.probe_auc_rule,
                "comparisons": comparisons, "verdict": overall}

    def _embedding(self, embeddings: dict[str, dict[str, np.ndarray]], out_dir: Path, seed: int) -> dict[str, Any]:
        shown = [g for g in grp.GROUPS if PENULTIMATE in embeddings[g]]
        sizes = {g: len(embeddings[g][PENULTIMATE]) for g in shown}
        if sum(sizes.values()) < 3:
            return {"method": None, "layer": PENULTIMATE, "groups": sizes,
                    "status": "not drawn: fewer than 3 embedded cutouts"}
        features = np.concatenate([embeddings[g][PENULTIMATE] for g in shown])
        coords, info = project_2d(features, method=self.config.embedding_method, seed=seed)
        labels = np.repeat(shown, [sizes[g] for g in shown])
        out_dir.mkdir(parents=True, exist_ok=True)
        plot_embedding(out_dir / EMBEDDING_FIGURE, coords, labels, shown, info)
        return {**info, "requested": self.config.embedding_method, "layer": PENULTIMATE, "standardized": True,
                "groups": sizes, "figure": EMBEDDING_FIGURE, "status": "ok"}


def _headline(result: dict[str, Any], rule_groups: tuple[str, ...]) -> dict[str, float]:
    headline: dict[str, float] = {}
    pen = result["per_layer"][PENULTIMATE]["probe_auc"]
    for key, pair in (("probe_auc_injections_vs_real", "injections_vs_positives"),
                      ("probe_auc_positives_vs_negatives", "positives_vs_negatives"),
                      ("probe_auc_injections_low_bf_vs_tier_a", "injections_low_bf_vs_tier_a"),
                      ("probe_auc_injections_high_bf_vs_tier_a", "injections_high_bf_vs_tier_a")):
        if math.isfinite(pen[pair]["auc"]):
            headline[key] = float(pen[pair]["auc"])
    rec = result["recall_at_threshold"]
    for key, group in (("recall_injections", "injections"), ("recall_positives", "positives"),
                       ("recall_tier_a", "tier_a")):
        if rec[group]["status"] == "ok":
            headline[key] = float(rec[group]["recall"])
    for group in ("tier_a", "injections_low_bf", "injections_high_bf", "negatives"):
        if result["groups"][group]["n"]:
            headline[f"median_score_{group}"] = result["groups"][group]["median_score"]
    for group in rule_groups:
        ratio = result["realism_rule"]["comparisons"][group]["frechet_ratio"]
        if math.isfinite(ratio):
            headline[f"frechet_ratio_{group}"] = float(ratio)
    return headline
