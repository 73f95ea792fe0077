"""Completeness figures: vs theta_E per source-magnitude bin (with intervals) and a theta_E x PSF heatmap.

Both pool the counts over the axes not shown (k and n summed, then the posterior formed), which
is what a marginal completeness means; averaging per-cell medians would weight sparse cells wrongly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dhs_inject.selection.statistics import completeness_posterior


def pooled(cells: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Counts summed over every axis but ``keys``, with the completeness posterior of the sums."""
    stacked = np.stack([np.asarray(cells[k], float) for k in keys], 1)
    groups, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    k = np.bincount(inverse, weights=cells["n_detected"], minlength=len(groups))
    n = np.bincount(inverse, weights=cells["n_ok"], minlength=len(groups))
    out = {key: groups[:, i] for i, key in enumerate(keys)}
    return {**out, "n_detected": k, "n_ok": n, **completeness_posterior(np.round(k), np.round(n))}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def completeness_vs_theta_e(path: Path, cells: dict[str, np.ndarray], title: str = "") -> Path:
    plt = _pyplot()
    table = pooled(cells, ("source_mag", "theta_e"))
    fig, ax = plt.subplots(figsize=(6, 4))
    for mag in np.unique(table["source_mag"]):
        sel = table["source_mag"] == mag
        x, med = table["theta_e"][sel], table["completeness"][sel]
        line, = ax.plot(x, med, marker="o", label=f"r = {mag:.2f}")
        ax.fill_between(x, table["completeness_low_95"][sel], table["completeness_high_95"][sel],
                        color=line.get_color(), alpha=0.12, lw=0)
        ax.fill_between(x, table["completeness_low_68"][sel], table["completeness_high_68"][sel],
                        color=line.get_color(), alpha=0.25, lw=0)
    ax.set(xlabel=r"$\theta_E$ (arcsec)", ylabel="completeness (posterior median, 68/95 %)", ylim=(0, 1), title=title)
    ax.legend(title="source mag bin", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def completeness_heatmap(path: Path, cells: dict[str, np.ndarray], y: str = "psfsize_r", title: str = "") -> Path:
    plt = _pyplot()
    table = pooled(cells, ("theta_e", y))
    xs, ys = np.unique(table["theta_e"]), np.unique(table[y])
    grid = np.full((len(ys), len(xs)), np.nan)
    for t, v, c in zip(table["theta_e"], table[y], table["completeness"]):
        grid[np.searchsorted(ys, v), np.searchsorted(xs, t)] = c
    fig, ax = plt.subplots(figsize=(6, 3.5))
    im = ax.imshow(grid, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(xs)), [f"{v:.2f}" for v in xs], rotation=45, fontsize=7)
    ax.set_yticks(range(len(ys)), [f"{v:.3g}" for v in ys], fontsize=7)
    ax.set(xlabel=r"$\theta_E$ (arcsec)", ylabel=f"{y} (bin centre)", title=title)
    fig.colorbar(im, ax=ax, label="completeness (posterior median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
