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

__all__ = ["GRID_PRESETS", "assign_configs", "build_injection_manifest", "grid_configs", "hash_uniform"]

_AXES = ("theta_e", "src_dmag", "src_reff", "src_e", "shear")

GRID_PRESETS: dict[str, dict[str, list[float]]] = {
    "grid_small": dict(theta_e=[0.3, 0.6, 1.0], src_dmag=[1, 2], src_reff=[0.08, 0.15], src_e=[0, 0.3],
                       shear=[0, 0.03]),
    "grid_sota": dict(theta_e=[0.5, 0.75, 1, 1.25, 1.5, 2, 2.5], src_dmag=[0.5, 1, 1.5, 2],
                      src_reff=[0.06, 0.10, 0.15, 0.20], src_e=[0, 0.2, 0.4], shear=[0, 0.02, 0.04]),
}


def grid_configs(preset: str | dict[str, list[float]]) -> dict[str, np.ndarray]:
    """All configs of a named preset (or of a table of the five axes) as columns (config_id,
    theta_e, src_dmag, src_reff, src_e, shear); the last axis varies fastest."""
    if isinstance(preset, str):
        require(preset in GRID_PRESETS, f"unknown injection grid {preset!r}; valid: {sorted(GRID_PRESETS)}")
        axes = GRID_PRESETS[preset]
    else:
        missing = [a for a in _AXES if a not in preset]
        require(not missing, f"an injection grid table needs the axes {_AXES}; missing {missing}")
        axes = preset
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


def assign_configs(galaxy_ids, n_configs: int, per_host: int | None, seed: int = 0) -> np.ndarray:
    """(n_hosts, k) config ids per host: every config (``per_host`` None) or ``per_host`` of them,
    spread evenly over the grid from a start drawn by hash, so the assignment of a host does not
    depend on which other hosts are present and the configs are used about equally often."""
    n = len(galaxy_ids)
    if per_host is None or per_host >= n_configs:
        return np.tile(np.arange(n_configs), (n, 1))
    require(per_host >= 1, f"configs per host must be >= 1; got {per_host}")
    # a second, independent hash stream (seed + 1): the control draw uses `seed`
    start = np.floor(hash_uniform(galaxy_ids, seed + 1) * n_configs).astype(int)
    stride = max(1, n_configs // per_host)
    return (start[:, None] + stride * np.arange(per_host)[None, :]) % n_configs


def build_injection_manifest(galaxy_ids, configs: dict[str, np.ndarray], *, control_frac: float = 0.5,
                             seed: int = 0, paired_controls: bool = False,
                             configs_per_host: int | None = None) -> dict[str, np.ndarray]:
    """Injection rows (host x config) plus control rows.

    Returns columns galaxy_id, label (1 injected, 0 control), config_id (-1 for controls) and the
    config axes (NaN for controls). Injected hosts get every config, or ``configs_per_host`` of
    them (:func:`assign_configs`).
    """
    require(0 <= control_frac < 1, f"control_frac must be in [0, 1); got {control_frac}")
    ids = np.asarray(list(galaxy_ids), dtype=object)
    require(len(set(ids.tolist())) == len(ids), "galaxy_id values must be unique")
    is_control = hash_uniform(ids, seed) < control_frac
    injected, controls = ids[~is_control], ids[is_control]
    if paired_controls:
        controls = injected
    n_cfg = len(configs["config_id"])
    assigned = assign_configs(injected, n_cfg, configs_per_host, seed)
    per_host = assigned.shape[1] if len(injected) else 0
    rows = assigned.reshape(-1)
    cols: dict[str, np.ndarray] = {
        "galaxy_id": np.concatenate([np.repeat(injected, per_host), controls]),
        "label": np.concatenate([np.ones(len(rows), int), np.zeros(len(controls), int)]),
        "config_id": np.concatenate([np.asarray(configs["config_id"])[rows], -np.ones(len(controls), int)]),
    }
    for axis in _AXES:
        cols[axis] = np.concatenate([np.asarray(configs[axis], float)[rows], np.full(len(controls), np.nan)])
    return cols
