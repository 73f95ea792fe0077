"""What the diagnostics evaluators need from a run: its trained network, its preprocessor, and
groups of cutouts — real lenses, non-lenses and injections into other non-lenses, and on request
Tier-A real lenses and injections split by beta_frac.

Groups are drawn from the held-out splits (``test`` and ``val`` by default) so the network never
saw them during training. Hosts for the injections are non-lenses that are *not* in the negatives
group, so the injection and negative groups share no cutout. Draws are seeded by the evaluator's
seed (``context.seed``), so a re-run picks the same cutouts and the same injections.

The optional groups (``feature_space``, the published test Q2.2):

* ``tier_a``: up to ``n_per_group`` held-out real lenses with manifest ``tier`` "A" (the confident
  grades), drawn on their own (they may overlap ``positives``); empty — with the reason in the
  counts — when the manifest has no ``tier`` column or no Tier-A lens is held out.
* ``injections_low_bf`` / ``injections_high_bf``: two injection sets of equal size into the *same*
  hosts as ``injections``, drawn with the injector prior's beta_frac (source offset / theta_E)
  pinned to [prior low, split] and [split, prior high]. Both use one seed, so they consume the same
  random stream and differ only in beta_frac (each source keeps its quantile of the area-weighted
  law; common random numbers): a difference between them is the source position, not host sampling
  or the other parameters. Pinning, rather than cutting one draw at the split, gives both groups
  the full size and makes each range explicit. Small beta_frac puts the source near the caustic,
  where it forms the bright extended arcs a finder is trained on; large beta_frac gives a faint
  counter-image and a barely distorted main image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_core.seeds import derive_seed
from dhs_data import layout as data_layout
from dhs_models import layout as models_layout
from dhs_models.inference import Finder, load_finder

#: manifest columns handed to the injector with each host (model2 reads type_bin)
HOST_COLUMNS = ("galaxy_id", "psfsize_r", "psfdepth_r", "type_bin")
#: every group, in the order tables and plots show them
GROUPS = ("positives", "tier_a", "negatives", "injections", "injections_low_bf", "injections_high_bf")
#: the groups made by injection
INJECTION_GROUPS = ("injections", "injections_low_bf", "injections_high_bf")
#: what a run directory must hold for these evaluators
NEEDS = (models_layout.ARTIFACTS["best"], data_layout.ARTIFACTS["manifest"],
         f"{data_layout.DATA_DIR}/{data_layout.STORE_INFO}")


def _no_cutouts() -> np.ndarray:
    return np.zeros((0, 3, 0, 0), np.float32)


@dataclass
class Groups:
    """Raw (nanomaggy) cutouts of the groups and the injection record."""

    positives: np.ndarray  # (n, 3, H, W) real lenses (label 1)
    negatives: np.ndarray  # (n, 3, H, W) non-lenses (label 0)
    injections: np.ndarray  # (n, 3, H, W) hosts + injected arcs
    arcs: np.ndarray  # (n, 3, H, W) the injected arcs alone (InjectionBatch.arcs)
    meta: dict[str, np.ndarray]  # group -> (n, n_metadata_columns) model metadata inputs
    counts: dict[str, Any]  # available / drawn per group, injector failures
    tier_a: np.ndarray = field(default_factory=_no_cutouts)  # (n, 3, H, W) Tier-A real lenses
    injections_low_bf: np.ndarray = field(default_factory=_no_cutouts)  # beta_frac in [prior low, split]
    injections_high_bf: np.ndarray = field(default_factory=_no_cutouts)  # beta_frac in [split, prior high]
    # injection group -> drawn parameters of each of its injections (InjectionBatch.params)
    params: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def require_run_dir(context: Any, evaluator: str) -> Path:
    run_dir = getattr(context, "run_dir", None)
    if run_dir is None:
        raise UserError(f"evaluator {evaluator!r} needs the run directory (a trained checkpoint and the data "
                        "store); run it from the evaluate stage of a run with [train]")
    run_dir = Path(run_dir)
    for artifact in NEEDS:
        if not (run_dir / artifact).is_file():
            raise UserError(f"evaluator {evaluator!r}: {run_dir / artifact} does not exist; it needs a run with "
                            "a data stage and a trained model (train/best.pt)")
    return run_dir


def load_run_model(run_dir: Path, evaluator: str) -> Finder:
    """The run's best.pt rebuilt through the architecture registry, with its training preprocessor."""
    return load_finder(run_dir / models_layout.ARTIFACTS["best"], what=f"evaluator {evaluator!r}: checkpoint")


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _meta(table: pa.Table, columns: tuple[str, ...]) -> np.ndarray:
    if not columns:
        return np.zeros((table.num_rows, 0), np.float32)
    return np.stack([_column(table, c).astype(np.float32) for c in columns], axis=1)


def tier_a_rows(table: pa.Table, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Up to ``n`` rows of ``table`` that are Tier-A real lenses (label 1, tier "A"), in random
    order, and "ok" or why there are none."""
    if "tier" not in table.column_names:
        return np.zeros(0, np.int64), "empty: the manifest has no tier column"
    tier = np.array([t == "A" for t in table.column("tier").to_pylist()], dtype=bool)
    rows = np.flatnonzero(tier & (_column(table, "label").astype(int) == 1))
    if rows.size == 0:
        return rows.astype(np.int64), "empty: no Tier-A lens (label 1, tier A) in the held-out splits"
    return rng.permutation(rows)[:n].astype(np.int64), "ok"


def beta_frac_configs(comp: Any, config: Any, split: float, where: str) -> tuple[Any, Any, dict[str, Any]]:
    """Injector configs with the prior's beta_frac pinned below / above ``split``, and the ranges.

    (None, None, info with the reason) when the injector has no beta_frac prior to pin.
    """
    prior = getattr(config, "prior", None)
    if prior is None or not hasattr(prior, "beta_frac"):
        return None, None, {"split": split, "status": f"not drawn: injector {comp.name!r} has no beta_frac prior "
                                                      "(set beta_frac_split = none to silence this)"}
    lo, hi = (float(v) for v in prior.beta_frac)
    if not lo < split < hi:
        raise UserError(f"{where}.beta_frac_split = {split:g} lies outside the injector's prior beta_frac range "
                        f"[{lo:g}, {hi:g}]; choose a split strictly inside it (published: 0.55), or none")
    # imported here: hosts.py builds on this module
    from dhs_inject.diagnostics.hosts import with_options

    low = with_options(comp, config, f"{where}.injector", prior={"beta_frac": (lo, split)})
    high = with_options(comp, config, f"{where}.injector", prior={"beta_frac": (split, hi)})
    return low, high, {"split": split, "low": [lo, split], "high": [split, hi], "status": "ok"}


def draw_groups(run_dir: Path, *, splits: tuple[str, ...], n_per_group: int, injector: Any,
                metadata_columns: tuple[str, ...], seed: int, evaluator: str, tier_a: bool = False,
                beta_frac_split: float | None = None) -> Groups:
    """Positives, negatives and injections (into unused negatives) from the run's held-out splits;
    with ``tier_a`` also Tier-A lenses, with a ``beta_frac_split`` also the two beta_frac groups."""
    from dhs_data.manifest import read_manifest
    from dhs_data.stores import open_store

    manifest = read_manifest(run_dir / data_layout.ARTIFACTS["manifest"])
    held = manifest.filter(pc.is_in(manifest.column("split"), pa.array(list(splits), pa.string())))
    missing = [c for c in metadata_columns if c not in manifest.column_names]
    if missing:
        raise UserError(f"evaluator {evaluator!r}: the model fuses metadata columns {missing} that the manifest lacks")
    rng = np.random.default_rng(seed)
    label = _column(held, "label").astype(int)
    pos_rows = rng.permutation(np.flatnonzero(label == 1))[:n_per_group]
    neg_all = rng.permutation(np.flatnonzero(label == 0))
    neg_rows, host_rows = neg_all[:n_per_group], neg_all[n_per_group:2 * n_per_group]
    store = open_store(run_dir / data_layout.DATA_DIR)
    shape = (0, 3, 0, 0)

    def images(rows: np.ndarray) -> np.ndarray:
        keys = [str(k) for k in _column(held, "cutout_path")[rows]]
        return store.get_many(keys) if keys else np.zeros(shape, np.float32)

    positives, negatives, hosts = images(pos_rows), images(neg_rows), images(host_rows)
    host_table = held.take(pa.array(host_rows, pa.int64()))
    counts: dict[str, Any] = {"splits": list(splits), "available_positives": int((label == 1).sum()),
                              "available_negatives": int((label == 0).sum()), "positives": len(pos_rows),
                              "negatives": len(neg_rows), "hosts": len(host_rows)}
    comp, config = plugins.resolve("injector", injector, where=f"evaluate.{evaluator}.injector")
    if len(hosts):
        host_meta = {c: _column(host_table, c) for c in (*HOST_COLUMNS, *metadata_columns)
                     if c in host_table.column_names}
        batch = comp.impl(config).inject(hosts, host_meta, rng)
        injections, arcs, used = batch.images, batch.arcs, np.asarray(batch.host_index, int)
        counts.update(injections=int(batch.n_ok), injection_failures=dict(batch.failures),
                      injection_dropped=int(batch.n_dropped))
    else:
        injections, arcs, used = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(0, int)
        counts.update(injections=0, injection_failures={}, injection_dropped=0)
    counts["injector"] = {"name": comp.name, "distribution": comp.distribution, "version": comp.version}
    meta = {"positives": _meta(held.take(pa.array(pos_rows, pa.int64())), metadata_columns),
            "negatives": _meta(held.take(pa.array(neg_rows, pa.int64())), metadata_columns),
            "injections": _meta(host_table, metadata_columns)[used]}
    groups = Groups(positives, negatives, injections, arcs, meta, counts,
                    params={"injections": dict(batch.params) if len(hosts) else {}})
    # the optional groups draw from their own seeds, so asking for them changes none of the above
    if tier_a:
        rows, status = tier_a_rows(held, n_per_group, np.random.default_rng(derive_seed(seed, "tier_a")))
        groups.tier_a = images(rows)
        meta["tier_a"] = _meta(held.take(pa.array(rows, pa.int64())), metadata_columns)
        counts.update(tier_a=len(rows), tier_a_status=status)
    if beta_frac_split is not None:
        _draw_beta_frac(groups, comp, config, float(beta_frac_split), hosts, host_table, metadata_columns,
                        derive_seed(seed, "beta_frac_injections"), f"evaluate.{evaluator}")
    return groups


def _draw_beta_frac(groups: Groups, comp: Any, config: Any, split: float, hosts: np.ndarray,
                    host_table: pa.Table, metadata_columns: tuple[str, ...], seed: int, where: str) -> None:
    low, high, info = beta_frac_configs(comp, config, split, where)
    groups.counts["beta_frac"] = info
    host_meta = {c: _column(host_table, c) for c in (*HOST_COLUMNS, *metadata_columns) if c in host_table.column_names}
    for name, cfg in (("injections_low_bf", low), ("injections_high_bf", high)):
        if cfg is None or not len(hosts):
            groups.params[name], groups.meta[name] = {}, _meta(host_table, metadata_columns)[:0]
            groups.counts.update({name: 0, f"{name}_failures": {}})
            continue
        # one seed for both: the same hosts and random stream, only the beta_frac range differs
        batch = comp.impl(cfg).inject(hosts, host_meta, np.random.default_rng(seed))
        setattr(groups, name, batch.images)
        groups.params[name] = dict(batch.params)
        groups.meta[name] = _meta(host_table, metadata_columns)[np.asarray(batch.host_index, int)]
        groups.counts.update({name: int(batch.n_ok), f"{name}_failures": dict(batch.failures)})
