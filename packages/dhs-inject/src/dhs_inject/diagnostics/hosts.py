"""Hosts and scored injections for the injection-recovery diagnostics (``beta_frac_ceiling``,
``host_conditioning``).

Hosts are non-lenses (label 0) of the run's held-out splits (``test`` and ``val`` by default), so
the network never saw them in training, optionally only the LRG-like ones (manifest ``type_bin``
DEV or SER, the hosts model 2 accepts). They are drawn with the evaluator's seed by
:func:`dhs_inject.selection.grid.draw_hosts`, the selection function's rule: without replacement
while the pool holds enough, otherwise each host as few times as possible; reuse is counted.

:func:`inject_and_score` injects one arc per host slot with a given injector config and scores the
injections with the run's finder, counting every attempt as in the selection function
(:mod:`dhs_inject.selection.cell`): an ``n_ok`` injection has a finite image and a finite score;
everything else is an ``n_failed`` attempt with its reason, never a non-detection. Two calls with
the same hosts and the same ``seed`` consume the same random stream, so configs that differ in one
prior range or in how the lens shape is chosen differ in nothing else (common random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dhs_core.errors import UserError
from dhs_data import layout as data_layout
from dhs_data.stores.base import read_readable
from dhs_inject.diagnostics.groups import HOST_COLUMNS, _column, _meta
from dhs_inject.injectors.model2 import LRG_TYPES
from dhs_inject.selection.grid import draw_hosts

#: drawn parameters reported per scored injection (when the injector draws them)
PARAMS = ("theta_e", "src_r_mag", "beta_frac", "lens_q", "lens_phi", "src_r_e", "src_n", "gamma_ext")


@dataclass
class HostPool:
    """The candidate hosts of one run: held-out non-lenses, LRG-like only when asked."""

    table: pa.Table  # manifest rows of the candidates
    store: Any  # the run's cutout store
    metadata_columns: tuple[str, ...]  # manifest columns the network fuses, in its order
    counts: dict[str, Any]  # splits, lrg_only, available


@dataclass
class Hosts:
    """Cutouts of drawn hosts with what the injector and the network need of each."""

    images: np.ndarray  # (n, 3, H, W) raw nanomaggy cutouts (readable ones only)
    meta: dict[str, np.ndarray]  # injector host_meta: HOST_COLUMNS and the metadata columns
    model_meta: np.ndarray | None  # (n, n_columns) network metadata inputs; None if it fuses none
    counts: dict[str, Any]  # requested, drawn, unique, reused, unreadable


@dataclass
class Scored:
    """Scored injections into one set of hosts (first axis = validly scored injections)."""

    scores: np.ndarray  # (n_ok,) sigmoid probabilities, all finite
    params: dict[str, np.ndarray]  # drawn parameters (PARAMS) and arc_snr, (n_ok,) each
    host_index: np.ndarray  # (n_ok,) row of the Hosts each injection went into
    counts: dict[str, Any]  # n_requested, n_attempted, n_ok, n_failed, failures by reason


def host_pool(run_dir: Path, *, splits: tuple[str, ...], lrg_only: bool, metadata_columns: tuple[str, ...],
              evaluator: str) -> HostPool:
    """Held-out non-lenses of ``run_dir`` (LRG-like only when ``lrg_only``)."""
    from dhs_data.manifest import read_manifest
    from dhs_data.stores import open_store

    manifest = read_manifest(run_dir / data_layout.ARTIFACTS["manifest"])
    missing = [c for c in metadata_columns if c not in manifest.column_names]
    if missing:
        raise UserError(f"evaluator {evaluator!r}: the model fuses metadata columns {missing} that the manifest lacks")
    held = manifest.filter(pc.is_in(manifest.column("split"), pa.array(list(splits), pa.string())))
    negatives = held.filter(pc.equal(held.column("label"), 0))
    counts: dict[str, Any] = {"splits": list(splits), "lrg_only": lrg_only,
                              "available_non_lenses": negatives.num_rows}
    if lrg_only:
        types = np.char.upper(_column(negatives, "type_bin").astype(str))
        negatives = negatives.filter(pa.array(np.isin(types, LRG_TYPES)))
        counts["available_lrg_like"] = negatives.num_rows
    counts["available"] = negatives.num_rows
    return HostPool(negatives, open_store(run_dir / data_layout.DATA_DIR), tuple(metadata_columns), counts)


def draw_rows(pool: HostPool, n: int, seed: int) -> np.ndarray:
    """``n`` rows of ``pool.table`` (fewer distinct ones, each reused evenly, if the pool is smaller)."""
    return draw_hosts(np.arange(pool.table.num_rows), n, seed)


def load_hosts(pool: HostPool, rows: np.ndarray) -> Hosts:
    """The cutouts of ``rows``; unreadable cutouts are left out and counted."""
    rows = np.asarray(rows, dtype=np.int64)
    counts: dict[str, Any] = {"requested": int(rows.size), "unique": int(np.unique(rows).size)}
    counts["reused"] = counts["requested"] - counts["unique"]
    table = pool.table.take(pa.array(rows, pa.int64()))
    keys = [str(k) for k in _column(table, "cutout_path")]
    images, readable, _ = read_readable(pool.store, keys) if keys else (None, np.zeros(0, bool), None)
    counts["unreadable"] = int((~readable).sum())
    table = table.filter(pa.array(readable))
    counts["drawn"] = table.num_rows
    meta = {c: _column(table, c) for c in (*HOST_COLUMNS, *pool.metadata_columns) if c in table.column_names}
    model_meta = _meta(table, pool.metadata_columns) if pool.metadata_columns else None
    if images is None:
        images = np.zeros((0, 3, 1, 1), np.float32)
    return Hosts(images, meta, model_meta, counts)


def inject_and_score(finder: Any, hosts: Hosts, comp: Any, config: Any, *, seed: int,
                     batch_size: int) -> Scored:
    """One arc per host slot, injected ``batch_size`` hosts at a time with ``comp.impl(config)`` and an
    rng seeded by ``seed``, scored by ``finder`` (``.score(images, meta=..., batch_size=...)``)."""
    injector = comp.impl(config)
    rng = np.random.default_rng(seed)
    failures: dict[str, int] = {}
    scores: list[np.ndarray] = []
    params: dict[str, list[np.ndarray]] = {}
    index: list[np.ndarray] = []
    n = len(hosts.images)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        meta = {k: v[start:stop] for k, v in hosts.meta.items()}
        batch = injector.inject(hosts.images[start:stop], meta, rng)
        for reason, count in batch.failures.items():
            failures[reason] = failures.get(reason, 0) + int(count)
        finite = np.isfinite(batch.images).all(axis=(1, 2, 3))
        if not finite.all():  # an injector that breaks its protocol still never gets NaNs scored
            failures["nonfinite_result"] = failures.get("nonfinite_result", 0) + int((~finite).sum())
        host = start + np.asarray(batch.host_index, dtype=np.int64)[finite]
        if not host.size:
            continue
        model_meta = hosts.model_meta[host] if hosts.model_meta is not None else None
        batch_scores = np.asarray(finder.score(batch.images[finite], meta=model_meta, batch_size=batch_size), float)
        valid = np.isfinite(batch_scores)
        if not valid.all():  # a NaN score is a failed attempt, never a non-detection
            failures["nonfinite_score"] = failures.get("nonfinite_score", 0) + int((~valid).sum())
        keep = np.flatnonzero(finite)[valid]
        scores.append(batch_scores[valid])
        index.append(host[valid])
        params.setdefault("arc_snr", []).append(np.asarray(batch.arc_snr, float)[keep])
        for name in PARAMS:
            if name in batch.params:
                params.setdefault(name, []).append(np.asarray(batch.params[name], float)[keep])
    n_ok = int(sum(s.size for s in scores))
    n_failed = int(sum(failures.values()))
    counts = {"n_requested": n, "n_attempted": n_ok + n_failed, "n_ok": n_ok, "n_failed": n_failed,
              "failures": failures}
    return Scored(np.concatenate(scores) if scores else np.zeros(0),
                  {k: np.concatenate(v) for k, v in params.items()},
                  np.concatenate(index) if index else np.zeros(0, np.int64), counts)


def with_options(comp: Any, config: Any, where: str, *, prior: dict[str, Any] | None = None,
                 **options: Any) -> Any:
    """``config`` with some prior ranges and options replaced, validated again by ``comp.Config``."""
    from pydantic import ValidationError

    fields = comp.Config.model_fields
    if prior is not None and "prior" not in fields:
        raise UserError(f"{where}: injector {comp.name!r} has no 'prior' option, so this diagnostic cannot set "
                        f"{', '.join(prior)} per bin; use an injector built on dhs_inject's InjectorConfig "
                        "(model1, model2)")
    unknown = [k for k in options if k not in fields]
    if unknown:
        raise UserError(f"{where}: injector {comp.name!r} has no option {', '.join(map(repr, unknown))}")
    values = {k: getattr(config, k) for k in fields}
    if prior is not None:
        values["prior"] = {**config.prior.model_dump(), **prior}
    values.update(options)
    try:
        return comp.Config(**values)
    except ValidationError as exc:
        raise UserError(f"{where} (injector {comp.name!r}): {exc}") from None
