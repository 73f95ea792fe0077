"""The selection-function grid: hosts binned by their observing conditions, cells and host draws."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from dhs_eval.strata import bin_index
from dhs_inject.selection.config import SelectionFunctionConfig


def psfdepth_to_m5(psfdepth: Any) -> np.ndarray:
    """5-sigma point-source depth (AB mag) from inverse variance: m5 = 22.5 - 2.5 log10(5 / sqrt(psfdepth))."""
    d = np.asarray(psfdepth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, 22.5 - 2.5 * np.log10(5.0 / np.sqrt(d)), np.nan)


def edges_or_span(edges: list[float] | None, values: np.ndarray) -> list[float]:
    """The configured edges, or one bin spanning every finite host value."""
    if edges is not None:
        return list(edges)
    finite = values[np.isfinite(values)]
    lo, hi = float(finite.min()), float(finite.max())
    return [lo, hi if hi > lo else float(np.nextafter(lo, np.inf))]


@dataclass(frozen=True)
class Grid:
    """Bin edges of the four axes and each host's PSF and depth bin (-1 = outside every bin)."""

    theta_e: list[float]
    psfsize_r_edges: list[float]
    psfdepth_r_edges: list[float]
    source_mag_edges: list[float]
    psf_bin: np.ndarray
    depth_bin: np.ndarray

    def cells(self) -> list[dict[str, Any]]:
        """One dict per cell: id, theta_e, and each axis' bin index, edges and centre."""
        out = []
        p, d, m = self.psfsize_r_edges, self.psfdepth_r_edges, self.source_mag_edges
        for theta_e in self.theta_e:
            for i in range(len(p) - 1):
                for j in range(len(d) - 1):
                    for k in range(len(m) - 1):
                        out.append({
                            "cell_id": f"t{theta_e:.4f}_p{i}_d{j}_m{k}", "theta_e": theta_e,
                            "psf_bin": i, "psfsize_r_lo": p[i], "psfsize_r_hi": p[i + 1],
                            "depth_bin": j, "psfdepth_r_lo": d[j], "psfdepth_r_hi": d[j + 1],
                            "mag_bin": k, "source_mag_lo": m[k], "source_mag_hi": m[k + 1],
                        })
        return out

    def hosts_in(self, cell: dict[str, Any]) -> np.ndarray:
        return np.flatnonzero((self.psf_bin == cell["psf_bin"]) & (self.depth_bin == cell["depth_bin"]))


def build_grid(cfg: SelectionFunctionConfig, psfsize_r: np.ndarray, psfdepth_r: np.ndarray) -> Grid:
    psf_edges = edges_or_span(cfg.psfsize_r_edges, psfsize_r)
    depth_edges = edges_or_span(cfg.psfdepth_r_edges, psfdepth_r)
    return Grid(cfg.theta_e.values(), psf_edges, depth_edges, list(cfg.source_mag_edges),
                bin_index(psfsize_r, psf_edges), bin_index(psfdepth_r, depth_edges))


def draw_hosts(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` host rows from ``candidates``: without replacement when the bin holds enough hosts,
    otherwise with replacement (each reused host receives a different arc)."""
    if candidates.size == 0:
        return candidates
    rng = np.random.default_rng(seed)
    return rng.choice(candidates, size=n, replace=candidates.size < n)


def task_digest(payload: dict[str, Any]) -> str:
    """Short content hash naming a cell's output: a file made with other inputs is never reused."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
