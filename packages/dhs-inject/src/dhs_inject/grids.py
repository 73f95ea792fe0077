"""Injection grids (published presets) and the injection-manifest builder.

A grid config is one combination of theta_e (arcsec), src_dmag (source r magnitude minus the host's
r magnitude), src_reff (source half-light radius, arcsec), src_e (source ellipticity modulus
|e| = (1-q)/(1+q), random angle) and shear (external shear magnitude, random angle).

Control assignment is by hash: a host is a control when ``sha256(f"{seed}:{galaxy_id}")`` mapped
to [0, 1) is below ``control_frac``, so the split does not depend on host order or on which other
hosts are present. Controls are the hosts that receive no injection (disjoint from the injected
hosts) unless ``paired_controls=True``, where every injected host also appears un-injected.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from dhs_inject.errors import require

__all__ = ["GRID_PRESETS", "build_injection_manifest", "grid_configs", "hash_uniform"]

_AXES = ("theta_e", "src_dmag", "src_reff", "src_e", "shear")

GRID_PRESETS: dict[str, dict[str, list[float]]] = {
    "grid_small": dict(theta_e=[0.3, 0.6, 1.0], src_dmag=[1, 2], src_reff=[0.08, 0.15], src_e=[0, 0.3],
                       shear=[0, 0.03]),
    "grid_sota": dict(theta_e=[0.5, 0.75, 1, 1.25, 1.5, 2, 2.5], src_dmag=[0.5, 1, 1.5, 2],
                      src_reff=[0.06, 0.10, 0.15, 0.20], src_e=[0, 0.2, 0.4], shear=[0, 0.02, 0.04]),
}


def grid_configs(preset: str) -> dict[str, np.ndarray]:
    """All configs of a named preset as columns (config_id, theta_e, src_dmag, src_reff, src_e, shear)."""
    require(preset in GRID_PRESETS, f"unknown injection grid {preset!r}; valid: {sorted(GRID_PRESETS)}")
    axes = GRID_PRESETS[preset]
    rows = list(itertools.product(*(axes[a] for a in _AXES)))
    out = {a: np.array([r[i] for r in rows], dtype=float) for i, a in enumerate(_AXES)}
    out["config_id"] = np.arange(len(rows))
    return out


def hash_uniform(galaxy_ids, seed: int) -> np.ndarray:
    """Deterministic U[0, 1) per galaxy id from SHA-256 (order- and population-independent)."""
    out = np.empty(len(galaxy_ids))
    for i, gid in enumerate(galaxy_ids):
        digest = hashlib.sha256(f"{seed}:{gid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def build_injection_manifest(galaxy_ids, configs: dict[str, np.ndarray], *, control_frac: float = 0.5,
                             seed: int = 0, paired_controls: bool = False) -> dict[str, np.ndarray]:
    """Hosts x configs injection rows plus control rows.

    Returns columns galaxy_id, label (1 injected, 0 control), config_id (-1 for controls) and the
    config axes (NaN for controls). Injected hosts get every config.
    """
    require(0 <= control_frac < 1, f"control_frac must be in [0, 1); got {control_frac}")
    ids = np.asarray(list(galaxy_ids), dtype=object)
    require(len(set(ids.tolist())) == len(ids), "galaxy_id values must be unique")
    is_control = hash_uniform(ids, seed) < control_frac
    injected, controls = ids[~is_control], ids[is_control]
    if paired_controls:
        controls = injected
    n_cfg = len(configs["config_id"])
    cols: dict[str, np.ndarray] = {
        "galaxy_id": np.concatenate([np.repeat(injected, n_cfg), controls]),
        "label": np.concatenate([np.ones(len(injected) * n_cfg, int), np.zeros(len(controls), int)]),
        "config_id": np.concatenate([np.tile(configs["config_id"], len(injected)), -np.ones(len(controls), int)]),
    }
    for axis in _AXES:
        cols[axis] = np.concatenate([np.tile(configs[axis], len(injected)), np.full(len(controls), np.nan)])
    return cols
