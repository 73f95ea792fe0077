"""What the ``feature_space`` evaluator shows: its model-card section (the ``"card"`` entry that
:func:`dhs_eval.card._evaluator` renders) and its 2-D embedding figure.

The card has three tables — the groups (n, median score, rate at the threshold), the probe AUC and
Fréchet distance of every pair at the penultimate layer, and the published realism-gap rule per
injection group — and notes giving the rule's verdict, the published Q2.2 numbers to compare with,
and how the embedding map was made.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: what each group holds, for tables and legends
DESCRIPTIONS = {"positives": "real lenses (label 1)", "tier_a": "Tier-A real lenses (tier A)",
                "negatives": "non-lenses (label 0)", "injections": "injections, beta_frac from the prior",
                "injections_low_bf": "injections, low beta_frac", "injections_high_bf": "injections, high beta_frac"}
#: the published Q2.2 result, quoted for comparison (docs/inject.md)
PUBLISHED = ("Published for comparison (Q2.2, EfficientNetV2-S, Tier-A / low-bf / high-bf / non-lenses): "
             "probe AUC 0.991 ± 0.010; FD 219.7 (low-bf), 199.8 (high-bf); median scores Tier-A 0.995, "
             "low-bf 0.107, high-bf 0.017, non-lenses 1.5e-5; verdict: realism gap.")
#: colour and marker per group, fixed so that figures of different runs compare at a glance
STYLE = {"positives": ("C0", "o"), "tier_a": ("C2", "*"), "negatives": ("0.6", "o"), "injections": ("C1", "s"),
         "injections_low_bf": ("C3", "^"), "injections_high_bf": ("C4", "v")}


def rule_text(cfg: Any) -> str:
    """The published rule in words, with the configured limits."""
    return (f"at the penultimate layer, FD(Tier-A, injections) / FD(Tier-A, non-lenses) > "
            f"{cfg.frechet_ratio_rule:g} or linear-probe AUC (injections vs Tier-A) > {cfg.probe_auc_rule:g} "
            "=> a realism gap: the network tells injections from real lenses, so injection-recovery "
            "completeness is a lower bound on, not a measure of, the completeness for real lenses")


def _value(entry: dict[str, Any], key: str) -> Any:
    """A number, or the reason there is none."""
    value = entry.get(key, math.nan)
    return float(value) if entry.get("status") == "ok" and math.isfinite(value) else entry.get("status", "—")


def _describe(result: dict[str, Any]) -> dict[str, str]:
    out = dict(DESCRIPTIONS)
    info = result["counts"].get("beta_frac") or {}
    if info.get("status") == "ok":
        lo, split = info["low"]
        hi = info["high"][1]
        out["injections_low_bf"] = f"injections, beta_frac in [{lo:g}, {split:g}]"
        out["injections_high_bf"] = f"injections, beta_frac in [{split:g}, {hi:g}]"
    name = (result["counts"].get("injector") or {}).get("name")
    if name:
        out = {g: (f"{d} ({name})" if g.startswith("injections") else d) for g, d in out.items()}
    return out


def card(result: dict[str, Any], pairs: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """The ``"card"`` entry of a feature_space result."""
    groups, what = result["groups"], _describe(result)
    rates, threshold = result["recall_at_threshold"], result["recall_at_threshold"]["threshold"]
    rows = []
    for group, summary in groups.items():
        rate = rates[group]
        cell = (f"{rate['k']}/{rate['n']} [{rate['interval_95'][0]:.3f}, {rate['interval_95'][1]:.3f}]"
                if rate["status"] == "ok" else rate["status"])
        rows.append([group, what[group], summary["n"], _value(summary, "median_score"), cell])
    tables = [{"title": "feature_space: groups (held-out " + ", ".join(result["config"]["splits"]) + ")",
               "columns": ["group", "cutouts", "n", "median score", f"score >= {threshold:g} (k/n) [95 %]"],
               "rows": rows}]
    pen = result["per_layer"]["penultimate"]
    pair_rows = [[pair, f"{groups[b]['n']} / {groups[a]['n']}",
                  _value(pen["probe_auc"][pair], "auc"), _value(pen["frechet"][pair], "distance")]
                 for pair, a, b in pairs]
    tables.append({"title": f"feature_space: penultimate layer (dim {pen['dim']})",
                   "columns": ["pair", "n (in name order)", "probe AUC (k-fold CV)", "Fréchet distance"],
                   "rows": pair_rows})
    rule = result["realism_rule"]
    rule_rows = [[g, _number(c["frechet_real_vs_injections"]), _number(c["frechet_real_vs_negatives"]),
                  _number(c["frechet_ratio"]), _number(c["probe_auc"]),
                  c["verdict"] + (f" ({c['status']})" if c["status"] != "ok" else "")]
                 for g, c in rule["comparisons"].items()]
    tables.append({"title": "feature_space: realism-gap rule (Q2.2), penultimate layer",
                   "columns": ["injections", "FD(Tier-A, inj)", "FD(Tier-A, non-lenses)", "FD ratio",
                               "probe AUC (inj vs Tier-A)", "verdict"], "rows": rule_rows})
    notes = [f"Rule (published Q2.2): {rule['rule']}. Verdict: **{rule['verdict']}**.", PUBLISHED]
    if groups["tier_a"]["n"] == 0:
        notes.append(f"No Tier-A group ({groups['tier_a']['status']}): the rule cannot be evaluated; the "
                     "injections_vs_positives pair compares injections with all real lenses.")
    notes.append(_embedding_note(result["embedding"]))
    return {"tables": tables, "notes": notes}


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else "not computable"


def _embedding_note(embedding: dict[str, Any]) -> str:
    if embedding.get("status") != "ok":
        return f"Embedding map: {embedding.get('status')}."
    if embedding["method"] == "pca":
        first, second = embedding["explained_variance_ratio"]
        how = f"PCA of the standardized features (PC1 {100 * first:.1f} %, PC2 {100 * second:.1f} % of the variance"
        how += ("; umap-learn is not installed, with it (pip install umap-learn) the map is a UMAP)"
                if embedding.get("requested") == "auto" else ")")
    else:
        how = f"UMAP of the standardized features (n_neighbors = {embedding.get('n_neighbors')})"
    return f"Embedding map ({embedding['figure']}): penultimate layer, {how}."


def plot_embedding(path: Path, coords: np.ndarray, labels: np.ndarray, groups: list[str], info: dict[str, Any]) -> None:
    """Scatter of the 2-D map, one colour and marker per group, the legend giving each n."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dhs_eval.plots import save_figure

    fig = Figure(figsize=(6.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # non-lenses first, so the lens and injection groups are drawn over them
    for group in sorted(groups, key=lambda g: g != "negatives"):
        mine = labels == group
        colour, marker = STYLE.get(group, ("k", "x"))
        ax.scatter(coords[mine, 0], coords[mine, 1], s=40 if marker == "*" else 16, c=colour, marker=marker,
                   alpha=0.5 if group == "negatives" else 0.8, linewidths=0, label=f"{group} (n={int(mine.sum())})")
    if info["method"] == "pca":
        first, second = info["explained_variance_ratio"]
        ax.set_xlabel(f"PC1 ({100 * first:.1f} % of variance)")
        ax.set_ylabel(f"PC2 ({100 * second:.1f} % of variance)")
    else:
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
    ax.set_title(f"penultimate-layer embeddings ({info['method'].upper()}, standardized features)", fontsize=9)
    ax.legend(fontsize=7, markerscale=1.2)
    save_figure(fig, path)
