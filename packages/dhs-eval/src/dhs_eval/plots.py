"""PNG figures for evaluation and model cards, drawn without a display.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly: no pyplot, so no
global backend state, no GUI, and safe in worker processes and on headless machines.

matplotlib is imported inside :func:`_figure` and :func:`save_figure`, not at module top: stage modules
import this module, and registering and listing plugins must not load a plotting library.

Completeness figures pool the counts over the axes not shown (k and n summed, then the posterior
formed, :func:`dhs_eval.selection.marginal`), which is what a marginal completeness means;
averaging per-cell medians would weight sparse cells wrongly.

The ROC is drawn with a logarithmic FPR axis because lens searches operate at FPR 1e-3 to 1e-4,
a region a linear axis squeezes into one pixel; the axis starts at 1/n_negatives, the smallest
FPR the sample resolves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from dhs_core.io import atomic_path
from dhs_eval import selection

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: axis labels of the selection-function grid columns
AXIS_LABELS = {"theta_e": r"$\theta_E$ (arcsec)", "psfsize_r": "PSF FWHM r (arcsec, bin centre)",
               "psfdepth_r": "psfdepth_r (bin centre)", "depth_m5": "5-sigma depth r (AB mag, bin centre)",
               "source_mag": "source r mag (bin centre)", "beta_frac": r"$\beta$ / $\theta_E$ (bin centre)"}


def _figure(**kwargs: Any) -> Figure:
    from matplotlib.figure import Figure  # lazily: see the module docstring

    return Figure(**kwargs)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically, at the resolution every dhs figure uses."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazily: see the module docstring

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def roc_figure(path: Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray, int]],
               operating_points: Iterable[tuple[str, float, float]] = (), *, title: str = "") -> Path:
    """ROC curves (label, fpr, tpr, n_negatives) on a log-FPR axis, with marked operating points."""
    fig = _figure(figsize=(5.5, 4.5))
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
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def calibration_figure(path: Path, bins: Mapping[str, np.ndarray], title: str = "") -> Path:
    """Reliability diagram: observed lens fraction against mean predicted probability per bin."""
    fig = _figure(figsize=(5, 5.5))
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
    return save_figure(fig, path)


def training_curves_figure(path: Path, rows: Sequence[Mapping[str, object]]) -> Path | None:
    """Loss curves and validation metrics against epoch, from train/metrics.jsonl rows."""
    rows = [r for r in rows if isinstance(r.get("epoch"), (int, float))]
    if not rows:
        return None
    keys = sorted({k for r in rows for k, v in r.items() if k != "epoch" and isinstance(v, (int, float))
                   and not isinstance(v, bool)})
    losses = [k for k in keys if "loss" in k]
    others = [k for k in keys if k not in losses and k not in ("lr", "seconds", "step")]
    fig = _figure(figsize=(9, 3.8))
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
    return save_figure(fig, path)


def completeness_vs_theta_e(path: Path, cells: Any, title: str = "") -> Path:
    """Completeness against theta_E, one line per source-magnitude bin, with 68 % and 95 % bands."""
    table = selection.marginal(cells, ("source_mag", "theta_e"))
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for mag in np.unique(table["source_mag"]):
        sel = table["source_mag"] == mag
        x, med = table["theta_e"][sel], table["completeness_median"][sel]
        line, = ax.plot(x, med, marker="o", label=f"r = {mag:.2f}")
        ax.fill_between(x, table["completeness_low_95"][sel], table["completeness_high_95"][sel],
                        color=line.get_color(), alpha=0.12, lw=0)
        ax.fill_between(x, table["completeness_low_68"][sel], table["completeness_high_68"][sel],
                        color=line.get_color(), alpha=0.25, lw=0)
    ax.set(xlabel=AXIS_LABELS["theta_e"], ylabel="completeness (posterior median, 68/95 %)", ylim=(0, 1), title=title)
    ax.legend(title="source mag bin", fontsize=8)
    return save_figure(fig, path)


def completeness_heatmap(path: Path, cells: Any, x: str = "theta_e", y: str = "psfsize_r", *, title: str = "",
                         interval_width: bool = True) -> Path:
    """Completeness (posterior median) on an x-by-y grid of marginals, and (``interval_width``)
    the width of its 68 % interval beside it."""
    table = selection.marginal(cells, (x, y))
    xs, ys = np.unique(table[x]), np.unique(table[y])
    median = np.full((ys.size, xs.size), np.nan)
    width = np.full_like(median, np.nan)
    for i, (xv, yv) in enumerate(zip(table[x], table[y])):
        r, c = np.searchsorted(ys, yv), np.searchsorted(xs, xv)
        median[r, c] = table["completeness_median"][i]
        width[r, c] = table["completeness_high_68"][i] - table["completeness_low_68"][i]
    panels = [(median, "completeness (posterior median)", "viridis", 1.0)]
    if interval_width:
        panels.append((width, "68 % interval width", "magma", None))
    fig = _figure(figsize=(5 * len(panels), 4) if interval_width else (6, 3.5))
    for j, (grid, label, cmap, vmax) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
        ax.set_xticks(range(xs.size), [f"{v:.3g}" for v in xs], fontsize=7, rotation=45)
        ax.set_yticks(range(ys.size), [f"{v:.3g}" for v in ys], fontsize=7)
        ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=AXIS_LABELS.get(y, y), title=title)
        fig.colorbar(im, ax=ax, label=label)
    return save_figure(fig, path)


def completeness_overlay(path: Path, curves: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> Path:
    """Marginal completeness against theta_E of several runs on one axis, each with its 68 % band
    (``curves``: label and a :func:`dhs_eval.selection.marginal` table over ``theta_e``)."""
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, table in curves:
        line, = ax.plot(table["theta_e"], table["completeness_median"], marker="o", label=label)
        ax.fill_between(table["theta_e"], table["completeness_low_68"], table["completeness_high_68"],
                        color=line.get_color(), alpha=0.2, lw=0)
    ax.set(xlabel=AXIS_LABELS["theta_e"], ylabel="completeness (posterior median, 68 %)", ylim=(0, 1))
    ax.legend(fontsize=8)
    return save_figure(fig, path)
