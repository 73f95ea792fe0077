"""What both diagnostics evaluators need from a run: its trained network, its preprocessor, and
three groups of cutouts — real lenses, non-lenses and injections into other non-lenses.

Groups are drawn from the held-out splits (``test`` and ``val`` by default) so the network never
saw them during training. Hosts for the injections are non-lenses that are *not* in the negatives
group, so the injection and negative groups share no cutout. Draws are seeded by the evaluator's
seed (``context.seed``), so a re-run picks the same cutouts and the same injections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dhs_core import plugins
from dhs_core.errors import UserError
from dhs_data import layout as data_layout
from dhs_models import layout as models_layout
from dhs_models.inference import Finder, load_finder

#: manifest columns handed to the injector with each host (model2 reads type_bin)
HOST_COLUMNS = ("galaxy_id", "psfsize_r", "psfdepth_r", "type_bin")
#: what a run directory must hold for these evaluators
NEEDS = (models_layout.ARTIFACTS["best"], data_layout.ARTIFACTS["manifest"],
         f"{data_layout.DATA_DIR}/{data_layout.STORE_INFO}")


@dataclass
class Groups:
    """Raw (nanomaggy) cutouts of the three groups and the injection record."""

    positives: np.ndarray  # (n, 3, H, W) real lenses (label 1)
    negatives: np.ndarray  # (n, 3, H, W) non-lenses (label 0)
    injections: np.ndarray  # (n, 3, H, W) hosts + injected arcs
    arcs: np.ndarray  # (n, 3, H, W) the injected arcs alone (InjectionBatch.arcs)
    meta: dict[str, np.ndarray]  # group -> (n, n_metadata_columns) model metadata inputs
    counts: dict[str, Any]  # available / drawn per group, injector failures


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


def draw_groups(run_dir: Path, *, splits: tuple[str, ...], n_per_group: int, injector: Any,
                metadata_columns: tuple[str, ...], seed: int, evaluator: str) -> Groups:
    """Positives, negatives and injections (into unused negatives) from the run's held-out splits."""
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
    return Groups(positives, negatives, injections, arcs, meta, counts)
