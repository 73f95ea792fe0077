"""The selection-function grid: hosts binned by their observing conditions, cells and host draws."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from dhs_eval.strata import bin_index
from dhs_inject.depth import m5_to_psfdepth, psfdepth_to_m5
from dhs_inject.selection.config import SelectionFunctionConfig


def edges_or_span(edges: list[float] | None, values: np.ndarray) -> list[float]:
    """The configured edges, or one bin spanning every finite host value."""
    if edges is not None:
        return list(edges)
    finite = values[np.isfinite(values)]
    lo, hi = float(finite.min()), float(finite.max())
    return [lo, hi if hi > lo else float(np.nextafter(lo, np.inf))]


@dataclass(frozen=True)
class Grid:
    """Bin edges of the axes and each host's PSF and depth bin (-1 = outside every bin).

    Depth bins are held in 5-sigma AB mag (``depth_m5_edges``) whichever unit the spec gave them
    in, with the matching inverse-variance edges beside them; ``beta_frac_edges`` is None when the
    injector prior's own range is used (one bin, not a grid axis)."""

    theta_e: list[float]
    psfsize_r_edges: list[float]
    depth_m5_edges: list[float]
    source_mag_edges: list[float]
    beta_frac_edges: list[float] | None
    psf_bin: np.ndarray
    depth_bin: np.ndarray

    @property
    def psfdepth_r_edges(self) -> list[float]:
        return [float(m5_to_psfdepth(m)) for m in self.depth_m5_edges]

    def cells(self) -> list[dict[str, Any]]:
        """One dict per cell: id, theta_e, and each axis' bin index, edges and centre."""
        out = []
        p, d, m = self.psfsize_r_edges, self.depth_m5_edges, self.source_mag_edges
        b = self.beta_frac_edges or [None, None]
        iv = self.psfdepth_r_edges
        for theta_e in self.theta_e:
            for i in range(len(p) - 1):
                for j in range(len(d) - 1):
                    for k in range(len(m) - 1):
                        for h in range(len(b) - 1):
                            cell_id = f"t{theta_e:.4f}_p{i}_d{j}_m{k}" + (f"_b{h}" if self.beta_frac_edges else "")
                            cell = {
                                "cell_id": cell_id, "theta_e": theta_e,
                                "psf_bin": i, "psfsize_r_lo": p[i], "psfsize_r_hi": p[i + 1],
                                "depth_bin": j, "depth_m5_lo": d[j], "depth_m5_hi": d[j + 1],
                                "psfdepth_r_lo": iv[j], "psfdepth_r_hi": iv[j + 1],
                                "mag_bin": k, "source_mag_lo": m[k], "source_mag_hi": m[k + 1],
                            }
                            if self.beta_frac_edges:
                                cell.update(beta_bin=h, beta_frac_lo=b[h], beta_frac_hi=b[h + 1])
                            out.append(cell)
        return out

    def hosts_in(self, cell: dict[str, Any]) -> np.ndarray:
        return np.flatnonzero((self.psf_bin == cell["psf_bin"]) & (self.depth_bin == cell["depth_bin"]))


def build_grid(cfg: SelectionFunctionConfig, psfsize_r: np.ndarray, psfdepth_r: np.ndarray) -> Grid:
    """The grid of ``cfg`` over hosts with these observing conditions; depth binned in 5-sigma mag
    (the inverse-variance edges of ``psfdepth_r_edges`` are converted: m5 is monotonic in them)."""
    m5 = psfdepth_to_m5(psfdepth_r)
    psf_edges = edges_or_span(cfg.psfsize_r_edges, psfsize_r)
    if cfg.depth_mag_edges is not None:
        depth_edges = list(cfg.depth_mag_edges)
    elif cfg.psfdepth_r_edges is not None:
        depth_edges = [float(v) for v in psfdepth_to_m5(cfg.psfdepth_r_edges)]
    else:
        depth_edges = edges_or_span(None, m5)
    return Grid(cfg.theta_e.values(), psf_edges, depth_edges, list(cfg.source_mag_edges),
                list(cfg.beta_frac_edges) if cfg.beta_frac_edges else None,
                bin_index(psfsize_r, psf_edges), bin_index(m5, depth_edges))


def draw_hosts(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` host rows from ``candidates``, each host as few times as possible: without replacement
    while the bin holds at least ``n`` hosts; otherwise every host once per pass, in a new random
    order each pass, so reuse is spread evenly (each reused host receives a different arc) and the
    cell has min(n, len(candidates)) distinct hosts."""
    if candidates.size == 0:
        return candidates
    rng = np.random.default_rng(seed)
    if candidates.size >= n:
        return rng.choice(candidates, size=n, replace=False)
    passes = -(-n // candidates.size)
    return np.concatenate([rng.permutation(candidates) for _ in range(passes)])[:n]


def task_digest(payload: dict[str, Any]) -> str:
    """Short content hash naming a cell's output: a file made with other inputs is never reused."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
