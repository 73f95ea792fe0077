"""PNG figures for evaluation and model cards, drawn without a display.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly: no pyplot, so no
global backend state, no GUI, and safe in worker processes and on headless machines.

The ROC is drawn with a logarithmic FPR axis because lens searches operate at FPR 1e-3 to 1e-4,
a region a linear axis squeezes into one pixel; the axis starts at 1/n_negatives, the smallest
FPR the sample resolves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dhs_core.io import atomic_path


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def roc_figure(path: Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray, int]],
               operating_points: Iterable[tuple[str, float, float]] = ()) -> Path:
    """ROC curves (label, fpr, tpr, n_negatives) on a log-FPR axis, with marked operating points."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    floor = 1.0
    for label, fpr, tpr, n_neg in curves:
        floor = min(floor, 1.0 / max(n_neg, 1))
        keep = fpr > 0
        ax.step(fpr[keep], tpr[keep], where="post", label=label)
    for label, fpr, tpr in operating_points:
        if np.isfinite(fpr) and np.isfinite(tpr) and fpr > 0:
            ax.plot([fpr], [tpr], "o", ms=5, label=label)
    grid = np.logspace(np.log10(floor), 0, 50)
    ax.plot(grid, grid, ":", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (log)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def calibration_figure(path: Path, bins: Mapping[str, np.ndarray], title: str = "") -> Path:
    """Reliability diagram: observed lens fraction against mean predicted probability per bin."""
    fig = Figure(figsize=(5, 5.5))
    ax, hist = fig.add_subplot(4, 1, (1, 3)), fig.add_subplot(4, 1, 4)
    full = bins["count"] > 0
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(bins["mean_prob"][full], bins["frac_pos"][full], "o-", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed fraction of lenses")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    edges = bins["edges"]
    hist.bar(edges[:-1], bins["count"], width=np.diff(edges), align="edge", color="grey")
    hist.set_yscale("log")
    hist.set_xlim(0, 1)
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("count")
    return _save(fig, path)


def training_curves_figure(path: Path, rows: Sequence[Mapping[str, object]]) -> Path | None:
    """Loss curves and validation metrics against epoch, from train/metrics.jsonl rows."""
    rows = [r for r in rows if isinstance(r.get("epoch"), (int, float))]
    if not rows:
        return None
    keys = sorted({k for r in rows for k, v in r.items() if k != "epoch" and isinstance(v, (int, float))
                   and not isinstance(v, bool)})
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses and k not in ("lr", "seconds", "step")]
    fig = Figure(figsize=(9, 3.8))
    for i, (group, ylabel) in enumerate(((losses, "loss"), (others, "validation metric"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for key in group:
            pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            ax.plot(*zip(*pts), "o-", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if group:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def completeness_heatmap(path: Path, table: Mapping[str, np.ndarray], x: str, y: str) -> Path:
    """Completeness (posterior median) and 68 % interval width on an x-by-y grid of marginals."""
    xs, ys = np.unique(table[x]), np.unique(table[y])
    median = np.full((ys.size, xs.size), np.nan)
    width = np.full_like(median, np.nan)
    for i, (xv, yv) in enumerate(zip(table[x], table[y])):
        r, c = np.searchsorted(ys, yv), np.searchsorted(xs, xv)
        median[r, c] = table["completeness_median"][i]
        width[r, c] = table["completeness_high_68"][i] - table["completeness_low_68"][i]
    fig = Figure(figsize=(10, 4))
    for j, (grid, label, cmap) in enumerate(((median, "completeness (posterior median)", "viridis"),
                                             (width, "68 % interval width", "magma"))):
        ax = fig.add_subplot(1, 2, j + 1)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap, vmin=0, vmax=1 if j == 0 else None)
        ax.set_xticks(range(xs.size), [f"{v:.3g}" for v in xs], fontsize=7, rotation=45)
        ax.set_yticks(range(ys.size), [f"{v:.3g}" for v in ys], fontsize=7)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        fig.colorbar(im, ax=ax, label=label)
    return _save(fig, path)
