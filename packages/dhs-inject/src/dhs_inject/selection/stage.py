"""The ``selection_function`` stage: injection-recovery completeness on a grid.

Cells are theta_E x host PSF bin x host depth bin x source magnitude bin. Each cell is one
executor task writing ``selection_function/cells/<cell_id>-<digest>.parquet``; the digest hashes
everything that determines the cell (its definition, injector config, hosts, checkpoint SHA-256,
preprocessor, batch size, seed), so a killed run resumes per finished cell while a changed input
never reuses a stale cell. Detection (score >= threshold) is applied when aggregating, from the
stored scores, at every configured threshold into ``cells.parquet`` (long form: one row per cell
and threshold); ``meta.json`` records the thresholds, every count and the summaries (pooled k/n
and the mean over cells, labelled, and the marginal tables by axis, per threshold).

The stage is registered as an instance, so this module imports no torch, scipy or matplotlib at
module level: the cell worker, the statistics and the plots are imported inside the functions
that use them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dhs_core import Section, Stage, StageContext
from dhs_core.allocator import retain_freed_memory
from dhs_core.errors import UserError
from dhs_core.io import atomic_path, sha256_file, write_json
from dhs_data import layout as data_layout
from dhs_inject.__about__ import __version__
from dhs_inject.layout import (
    ARTIFACTS,
    CELL_DIR,
    CELLS,
    GALLERY,
    INJECTIONS,
    META,
    PRIOR_SETS,
    QA,
    SENSITIVITY,
)
from dhs_inject.selection.config import SelectionFunctionConfig
from dhs_models import layout as models_layout

#: manifest columns handed to the injector with each host
HOST_COLUMNS = ("galaxy_id", "psfsize_r", "psfdepth_r", "type_bin")


def _dump(section: Any) -> dict[str, Any] | None:
    return None if section is None else section.model_dump(mode="json")


def select_hosts(manifest: pa.Table, cfg: SelectionFunctionConfig, source: str) -> pa.Table:
    """Non-lens cutouts of ``host_split`` (and ``host_pools``) with finite observing conditions."""
    splits = sorted(set(manifest.column("split").drop_null().to_pylist()))
    if cfg.host_split not in splits:
        raise UserError(f"selection_function.host_split = {cfg.host_split!r}: {source} has no such split; "
                        f"splits present: {', '.join(splits)}")
    mask = pc.and_(pc.equal(manifest.column("split"), cfg.host_split), pc.equal(manifest.column("label"), 0))
    if cfg.host_pools is not None:
        mask = pc.and_(mask, pc.is_in(manifest.column("pool"), pa.array(cfg.host_pools, pa.string())))
    hosts = manifest.filter(mask)
    if hosts.num_rows == 0:
        raise UserError(f"selection_function: no non-lens cutouts in split {cfg.host_split!r}"
                        + (f" with pool in {cfg.host_pools}" if cfg.host_pools else "") + f" in {source}")
    return hosts


def detection_thresholds(cfg: SelectionFunctionConfig, run_dir: Path, manifest: pa.Table) -> list[tuple[str, Any]]:
    """(name, :class:`dhs_eval.selection.Threshold`) of every configured threshold, primary first.

    FPR thresholds come from the validly scored negatives of ``threshold_split``, all from the
    same scores. An FPR below 1/n_valid cannot be resolved by that sample: from the
    ``thresholds`` table it is reported (``resolvable`` False, its status) and gets no cell rows
    (its completeness is not guessed); the single ``target_fpr`` form keeps its documented
    behaviour (a threshold just above every negative, flagged)."""
    from dhs_eval.selection import fixed_threshold, threshold_at_fpr

    entries = cfg.threshold_entries()
    neg = None
    out = []
    for name, kind, value in entries:
        if kind == "fixed":
            out.append((name, fixed_threshold(value)))
            continue
        if neg is None:
            scores = pq.read_table(run_dir / models_layout.ARTIFACTS["scores"])
            scores = scores.filter(pc.equal(scores.column("split"), cfg.threshold_split))
            label = dict(zip(manifest.column("galaxy_id").to_pylist(), manifest.column("label").to_pylist()))
            neg = np.array([s for g, s in zip(scores.column("galaxy_id").to_pylist(),
                                              scores.column("score").to_numpy(zero_copy_only=False))
                            if label.get(g) == 0], dtype=np.float64)
        thr = threshold_at_fpr(neg, value)
        if thr.n_valid == 0:
            raise UserError(f"selection_function: FPR threshold {name}: {models_layout.ARTIFACTS['scores']} has no "
                            f"validly scored negatives in split {cfg.threshold_split!r}; set threshold_split to a "
                            "split with negatives or give fixed thresholds")
        out.append((name, thr))
    return out


def usable_thresholds(cfg: SelectionFunctionConfig, thresholds: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The thresholds that get cell rows: all, except unresolvable FPRs of the ``thresholds`` table."""
    if cfg.thresholds is None:
        return thresholds
    usable = [(n, t) for n, t in thresholds if t.resolvable is not False]
    if not usable:
        n_valid = thresholds[0][1].n_valid
        raise UserError(f"selection_function.thresholds: no threshold is usable: every FPR is below 1/n_valid = "
                        f"1/{n_valid:,} on the {cfg.threshold_split!r} negatives (not resolvable); add a larger "
                        "FPR or a fixed threshold")
    return usable


class SelectionFunctionStage(Stage):
    """Inject arcs into real hosts cell by cell, score them with best.pt, report completeness."""

    name = "selection_function"
    sections = {"selection_function": Section(SelectionFunctionConfig,
                                              description="injection-recovery grid (theta_E x PSF x depth x source mag)")}
    trigger = "selection_function"
    needs = (models_layout.ARTIFACTS["best"], data_layout.ARTIFACTS["manifest"], models_layout.ARTIFACTS["scores"])
    produces = (ARTIFACTS["cells"], ARTIFACTS["meta"])
    artifacts = ARTIFACTS
    inputs = ("data", "preprocess", "model", "train")
    after = ("train", "evaluate")
    artifacts = ARTIFACTS

    def card_section(self, run_dir: Path) -> str:
        from dhs_inject.selection.card import section

        return section(run_dir)

    def run(self, ctx: StageContext) -> dict[str, float]:
        from dhs_data.manifest import read_manifest
        from dhs_eval import plots, selection
        from dhs_eval.selection import completeness_posterior
        from dhs_inject.selection import grid as grids
        from dhs_inject.selection.cell import CellTask, cell_injector_config, run_cell
        from dhs_models.inference import load_finder, require_device

        cfg: SelectionFunctionConfig = ctx.spec.selection_function
        retain_freed_memory()  # injection batches reuse freed heap pages (dhs_core.allocator)
        data_dir, checkpoint = ctx.run_dir / data_layout.DATA_DIR, ctx.path(models_layout.ARTIFACTS["best"])
        preprocess = _dump(getattr(ctx.spec, "preprocess", None))
        # refuses a checkpoint trained with another preprocessor: injections must reach the
        # network exactly as the training cutouts did
        device = str(require_device(cfg.device, what="selection_function.device").type)  # the cells score there (a scored cell is device-agnostic)
        finder = load_finder(checkpoint, preprocess=preprocess, device=device, what="selection_function: checkpoint")
        injector = _dump(cfg.injector)
        # injector.device = "cuda" renders the injections on the GPU; refused now, not in a worker
        require_device(str(injector.get("device", "cpu")), what="selection_function.injector.device")
        beta0 = tuple(cfg.beta_frac_edges[:2]) if cfg.beta_frac_edges else None
        cell_injector_config(injector, cfg.theta_e.start, cfg.source_mag_edges[0], cfg.source_mag_edges[1], beta0)
        # each sensitivity variant: the same injector with a perturbation (checked now, not mid-grid)
        variants = {v.name: {**injector, "perturb": v.model_dump(mode="json", exclude={"name"})}
                    for v in cfg.sensitivity}
        for name, inj in variants.items():
            cell_injector_config(inj, cfg.theta_e.start, cfg.source_mag_edges[0], cfg.source_mag_edges[1], beta0,
                                 where=f"selection_function.sensitivity[{name}]")
        manifest = read_manifest(data_dir / data_layout.MANIFEST)
        hosts = select_hosts(manifest, cfg, str(data_dir / data_layout.MANIFEST))
        psf = hosts.column("psfsize_r").to_numpy(zero_copy_only=False).astype(float)
        depth = hosts.column("psfdepth_r").to_numpy(zero_copy_only=False).astype(float)
        grid = grids.build_grid(cfg, psf, depth)
        columns = {c: hosts.column(c).to_numpy(zero_copy_only=False) for c in (*HOST_COLUMNS, *finder.metadata_columns)}
        keys = np.asarray(hosts.column("cutout_path").to_pylist(), dtype=object)
        cell_dir = ctx.stage_dir / CELL_DIR
        common = {"ckpt": sha256_file(checkpoint), "preprocess": preprocess, "injector": injector,
                  "batch_size": cfg.batch_size, "dhs_inject": __version__}
        tasks, n_hosts = [], {}
        variant_tasks: dict[str, list] = {name: [] for name in variants}
        prior_sets = cfg.prior_sets()
        prior_tasks: dict[str, list] = {p.name: [] for p in prior_sets}
        for cell in grid.cells():
            candidates = grid.hosts_in(cell)
            n_hosts[cell["cell_id"]] = int(candidates.size)
            chosen = grids.draw_hosts(candidates, cfg.per_cell, ctx.seed_for(cell["cell_id"], "hosts"))
            task_keys = keys[chosen].tolist()
            seed = ctx.seed_for(cell["cell_id"])
            digest = grids.task_digest({**common, "cell": cell, "hosts": task_keys, "seed": seed})
            tasks.append(CellTask(
                output=str(cell_dir / f"{cell['cell_id']}-{digest}.parquet"), cell=cell, data_dir=str(data_dir),
                checkpoint=str(checkpoint), preprocess=preprocess, injector=injector, host_keys=task_keys,
                host_meta={c: v[chosen].tolist() for c, v in columns.items()}, batch_size=cfg.batch_size, seed=seed,
                device=device))
            for name, inj in variants.items():  # same hosts, same seed: common random numbers
                digest = grids.task_digest({**common, "injector": inj, "cell": cell, "hosts": task_keys, "seed": seed})
                variant_tasks[name].append(replace(
                    tasks[-1], injector=inj,
                    output=str(cell_dir / f"{_slug(name)}__{cell['cell_id']}-{digest}.parquet")))
            for prior_set in prior_sets:  # the set's cells, injected with its beta_frac range
                pcell = _prior_set_cell(cell, prior_set)
                if pcell is None:
                    continue
                digest = grids.task_digest({**common, "cell": pcell, "hosts": task_keys, "seed": seed})
                prior_tasks[prior_set.name].append(replace(
                    tasks[-1], cell=pcell,
                    output=str(cell_dir / f"prior-{prior_set.name}__{cell['cell_id']}-{digest}.parquet")))
        empty = [c for c, n in n_hosts.items() if n == 0]
        if empty:
            ctx.log(f"selection_function: {len(empty)} cells have no host in their PSF x depth bin "
                    f"(completeness not defined there), e.g. {empty[0]}")
        # thresholds first (they need only the train stage's scores): the QA uses them
        all_thresholds = detection_thresholds(cfg, ctx.run_dir, manifest)
        thresholds = usable_thresholds(cfg, all_thresholds)
        primary_name, threshold = thresholds[0]
        qa = None
        if cfg.qa != "off":
            qa = self._qa(ctx, cfg, finder, injector, grid, keys, columns, data_dir, thresholds)
        if ctx.fresh:  # --force: recompute every cell, reuse none
            for old in cell_dir.glob("*.parquet"):
                old.unlink(missing_ok=True)
        every_task = tasks + [t for ts in (*variant_tasks.values(), *prior_tasks.values()) for t in ts]
        ctx.executor.map(run_cell, every_task, progress=ctx.progress,
                         desc="selection-function cells" + (f" (+{len(variants)} sensitivity variants)" if variants else ""))
        stats = dict(getattr(ctx.executor, "last_stats", {}) or {})
        ctx.log(f"selection_function: {stats.get('run', '?')} cells computed, {stats.get('skipped', '?')} reused")
        keep = {Path(t.output).name for t in every_task}
        for stale in cell_dir.glob("*.parquet"):
            if stale.name not in keep:  # cells of earlier inputs: never mixed into these results
                stale.unlink(missing_ok=True)
        cells, injections, failures = self._aggregate(tasks, n_hosts, thresholds)
        with atomic_path(ctx.stage_dir / CELLS) as tmp:
            pq.write_table(pa.table(cells), tmp)
        injections = pa.concat_tables(injections, promote_options="default") if injections else None
        prior_summary = None
        if prior_sets:
            table, prior_summary = _prior_sets(self._aggregate, prior_tasks, prior_sets, n_hosts, thresholds)
            with atomic_path(ctx.stage_dir / PRIOR_SETS) as tmp:
                pq.write_table(table, tmp)
        sensitivity = None
        if variants:
            table, sensitivity = _sensitivity(self._aggregate, variant_tasks, n_hosts, thresholds, cells)
            with atomic_path(ctx.stage_dir / SENSITIVITY) as tmp:
                pq.write_table(table, tmp)
        if injections is not None:
            with atomic_path(ctx.stage_dir / INJECTIONS) as tmp:
                pq.write_table(injections, tmp)
        by_threshold = {name: selection.at_threshold(cells, name) for name, _ in thresholds}
        summaries = {name: {"summary": selection.summary(rows), "marginals": selection.marginal_tables(rows)}
                     for name, rows in by_threshold.items()}
        primary = by_threshold[primary_name]
        total = summaries[primary_name]["summary"]
        wide = primary["theta_e"] >= 1.0 - 1e-9
        total_wide = completeness_posterior(primary["n_detected"][wide].sum(), primary["n_ok"][wide].sum())
        figures = []
        if cfg.plots and primary["n_ok"].sum() > 0:
            title = f"{injector['name']}, score >= {threshold.threshold:.4g} ({primary_name})"
            figures.append(plots.completeness_vs_theta_e(ctx.stage_dir / "completeness_theta_e.png", primary,
                                                         title).name)
            figures.append(plots.completeness_heatmap(ctx.stage_dir / "completeness_theta_e_psfsize_r.png", primary,
                                                      "theta_e", "psfsize_r", title=title,
                                                      interval_width=False).name)
        meta = {
            "threshold": threshold.threshold, "threshold_source": threshold.source,
            "target_fpr": threshold.target_fpr, "achieved_fpr": threshold.achieved_fpr,
            "n_valid_negatives": threshold.n_valid, "threshold_split": cfg.threshold_split,
            "threshold_status": threshold.status, "host_split": cfg.host_split, "per_cell": cfg.per_cell,
            "primary_threshold": primary_name,
            "thresholds": [{"name": name, "rows": any(name == n for n, _ in thresholds), **thr.as_dict()}
                           for name, thr in all_thresholds],
            "n_cells": len(tasks), "n_cells_without_hosts": len(empty),
            "n_cells_host_reuse": int(primary["host_reuse"].sum()),
            "n_requested": int(primary["n_requested"].sum()), "n_attempted": int(primary["n_attempted"].sum()),
            "n_ok": int(primary["n_ok"].sum()), "n_failed": int(primary["n_failed"].sum()),
            "n_detected": int(primary["n_detected"].sum()), "completeness": float(total["completeness"]),
            "completeness_mean_over_cells": float(total["mean_over_cells"]),
            "summaries": summaries,
            "failures_by_reason": failures, "threshold_detail": threshold.as_dict(), "injector": injector,
            "bins": {"theta_e": grid.theta_e, "psfsize_r_edges": grid.psfsize_r_edges,
                     "depth_m5_edges": grid.depth_m5_edges, "psfdepth_r_edges": grid.psfdepth_r_edges,
                     "source_mag_edges": grid.source_mag_edges, "beta_frac_edges": grid.beta_frac_edges},
            "cells_computed": stats.get("run"), "cells_reused": stats.get("skipped"), "figures": figures,
            "flux_qa": _flux_qa(injections),
            "sensitivity": sensitivity,
            "qa": None if qa is None else {"passed": qa["passed"], "mode": cfg.qa,
                                           "failed": [c["name"] for c in qa["checks"] if not c["passed"]]},
            "prior_sets": prior_summary,
        }
        if cfg.plots and primary["n_ok"].sum() > 0:
            from dhs_inject.selection import gallery

            gallery.write(ctx.stage_dir / GALLERY, tasks, ctx.run_dir, data_dir, threshold.threshold,
                          ctx.seed_for("gallery"))
        write_json(ctx.stage_dir / META, meta)
        out = {"completeness": float(total["completeness"]),
               "completeness_mean_over_cells": float(total["mean_over_cells"]),
               "completeness_theta_e_ge_1": float(total_wide["completeness"]),
               "threshold": float(threshold.threshold), "n_ok": float(meta["n_ok"]), "n_failed": float(meta["n_failed"])}
        if threshold.achieved_fpr is not None:
            out["achieved_fpr"] = float(threshold.achieved_fpr)
        # every threshold's two summaries, so a [[gates]] entry or a sweep table can name any of them
        # (e.g. "selection_function.mean_over_cells@p>=0.3")
        for name, entry in summaries.items():
            out[f"mean_over_cells@{name}"] = float(entry["summary"]["mean_over_cells"])
            out[f"completeness@{name}"] = float(entry["summary"]["completeness"])
        return out

    @staticmethod
    def _qa(ctx: StageContext, cfg: SelectionFunctionConfig, finder, injector: dict[str, Any], grid, keys, columns,
            data_dir: Path, thresholds) -> dict[str, Any]:
        """Run the pre-grid injection QA (dhs_inject.selection.qa), write qa.json, and stop the stage
        on a failed check unless ``qa = "warn"``."""
        from dhs_core import plugins
        from dhs_data.stores import open_store
        from dhs_inject.selection import grid as grids
        from dhs_inject.selection.qa import run_qa

        # distinct hosts (the host-FPR test counts hosts as independent trials)
        chosen = grids.draw_hosts(np.arange(len(keys)), min(cfg.qa_n, len(keys)), ctx.seed_for("qa", "hosts"))
        prior = {**dict(injector.get("prior") or {}), "theta_e": (min(grid.theta_e), max(grid.theta_e)),
                 "src_r_mag": (grid.source_mag_edges[0], grid.source_mag_edges[-1])}
        comp, inj_cfg = plugins.resolve("injector", {**injector, "prior": prior}, where="selection_function.injector")
        report = run_qa(store=open_store(data_dir), finder=finder, injector=comp.impl(inj_cfg),
                        host_keys=keys[chosen].tolist(), host_meta={c: v[chosen] for c, v in columns.items()},
                        thresholds=thresholds, seed=ctx.seed_for("qa"), batch_size=cfg.batch_size,
                        exact_flux=getattr(inj_cfg, "arc_poisson_gain", None) is None)
        write_json(ctx.stage_dir / QA, report)
        failed = [c for c in report["checks"] if not c["passed"]]
        for check in report["checks"]:
            ctx.log(f"selection_function QA: {check['name']}: {'pass' if check['passed'] else 'FAIL'} — {check['reason']}")
        if failed and cfg.qa == "stop":
            raise UserError("selection_function: the injection QA failed before the grid ("
                            + "; ".join(f"{c['name']}: {c['reason']}" for c in failed)
                            + f"); see {ARTIFACTS['qa']}. Fix the cause, or set selection_function.qa = \"warn\" "
                            "to run the grid anyway")
        return report

    @staticmethod
    def _aggregate(tasks: list[Any], n_hosts: dict[str, int], thresholds: list[tuple[str, Any]]):
        """Long-form cells (one row per cell and threshold), the injection rows (``detected`` at the
        primary threshold) and the failures by reason."""
        from dhs_eval.selection import completeness_posterior, unique_host_posterior
        from dhs_inject.selection.cell import read_cell

        rows: dict[str, list] = {}
        injections, failures = [], {}
        for task in tasks:
            info, table = read_cell(task.output)
            c = task.cell
            scores = table.column("score").to_numpy(zero_copy_only=False)
            for reason, count in info["failures"].items():
                failures[reason] = failures.get(reason, 0) + int(count)
            n_unique = (len(set(table.column("galaxy_id").to_pylist())) if "galaxy_id" in table.column_names
                        else info["n_ok"])
            snr = table.column("arc_snr").to_numpy() if table.num_rows else np.array([])
            values = {
                "cell_id": c["cell_id"], "theta_e": c["theta_e"],
                "psfsize_r": 0.5 * (c["psfsize_r_lo"] + c["psfsize_r_hi"]),
                "psfsize_r_lo": c["psfsize_r_lo"], "psfsize_r_hi": c["psfsize_r_hi"],
                "depth_m5": 0.5 * (c["depth_m5_lo"] + c["depth_m5_hi"]),
                "depth_m5_lo": c["depth_m5_lo"], "depth_m5_hi": c["depth_m5_hi"],
                "psfdepth_r": 0.5 * (c["psfdepth_r_lo"] + c["psfdepth_r_hi"]),
                "psfdepth_r_lo": c["psfdepth_r_lo"], "psfdepth_r_hi": c["psfdepth_r_hi"],
                "source_mag": 0.5 * (c["source_mag_lo"] + c["source_mag_hi"]),
                "source_mag_lo": c["source_mag_lo"], "source_mag_hi": c["source_mag_hi"],
                **({"beta_frac": 0.5 * (c["beta_frac_lo"] + c["beta_frac_hi"]), "beta_frac_lo": c["beta_frac_lo"],
                    "beta_frac_hi": c["beta_frac_hi"]} if "beta_frac_lo" in c else {}),
                "n_hosts": n_hosts[c["cell_id"]], "n_requested": info["n_requested"],
                "n_attempted": info["n_attempted"], "n_ok": info["n_ok"], "n_failed": info["n_failed"],
                "n_unique_hosts": n_unique, "host_reuse": n_unique < info["n_ok"],
                "mean_arc_snr": float(np.mean(snr)) if snr.size else np.nan,
                "median_arc_snr": float(np.median(snr)) if snr.size else np.nan,
            }
            for rank, (name, thr) in enumerate(thresholds):
                row = {**values, "threshold_name": name, "threshold": thr.threshold, "threshold_source": thr.source,
                       "target_fpr": np.nan if thr.target_fpr is None else thr.target_fpr,
                       "achieved_fpr": np.nan if thr.achieved_fpr is None else thr.achieved_fpr,
                       "primary": rank == 0, "n_detected": int((scores >= thr.threshold).sum())}
                for key, val in row.items():
                    rows.setdefault(key, []).append(val)
            if table.num_rows:
                table = table.replace_schema_metadata(None)
                injections.append(table.append_column("cell_id", pa.array([c["cell_id"]] * table.num_rows))
                                  .append_column("detected", pa.array(scores >= thresholds[0][1].threshold)))
        cells = {k: np.asarray(v) for k, v in rows.items()}
        k, n = cells["n_detected"], cells["n_ok"]
        cells.update(completeness_posterior(k, n))
        cells.update(unique_host_posterior(k, n, cells["n_unique_hosts"]))
        return cells, injections, failures


def _prior_set_cell(cell: dict[str, Any], prior_set) -> dict[str, Any] | None:
    """The cell as injected under a prior set, or None when the cell lies outside the set: its
    theta_E outside the set's range, or its magnitude bin not overlapping the set's magnitude
    range. Source magnitudes are drawn in the overlap of the bin and the set's range, beta_frac
    in the set's range (intersected with the cell's beta_frac bin when the grid has one)."""
    eps = 1e-9
    t_lo, t_hi = prior_set.theta_e
    if not (t_lo - eps <= cell["theta_e"] <= t_hi + eps):
        return None
    m_lo, m_hi = max(prior_set.src_r_mag[0], cell["source_mag_lo"]), min(prior_set.src_r_mag[1], cell["source_mag_hi"])
    if m_lo >= m_hi:
        return None
    b_lo, b_hi = prior_set.beta_frac
    if "beta_frac_lo" in cell:
        b_lo, b_hi = max(b_lo, cell["beta_frac_lo"]), min(b_hi, cell["beta_frac_hi"])
        if b_lo > b_hi:
            return None
    return {**cell, "source_mag_lo": m_lo, "source_mag_hi": m_hi, "beta_frac_lo": b_lo, "beta_frac_hi": b_hi,
            "prior_set": prior_set.name}


def _prior_sets(aggregate, prior_tasks: dict[str, list], prior_sets, n_hosts: dict[str, int], thresholds):
    """(prior_sets.parquet table, summary): each set's long-form cells with a ``prior_set`` column,
    and per set and threshold the summary (pooled k/n and the mean over cells, labelled)."""
    from dhs_eval import selection

    tables, summary = [], {}
    for prior_set in prior_sets:
        tasks = prior_tasks[prior_set.name]
        info = {"theta_e": list(prior_set.theta_e), "beta_frac": list(prior_set.beta_frac),
                "src_r_mag": list(prior_set.src_r_mag), "n_cells": len(tasks)}
        if not tasks:
            summary[prior_set.name] = {**info, "status": "no grid cell lies inside this prior set's ranges"}
            continue
        cells, _, failures = aggregate(tasks, n_hosts, thresholds)
        if "beta_bin" not in tasks[0].cell:  # the set's beta_frac range, not a grid bin: kept as _lo / _hi
            cells.pop("beta_frac", None)
        tables.append(pa.table({"prior_set": [prior_set.name] * len(cells["cell_id"]),
                                **{k: v.tolist() for k, v in cells.items()}}))
        summary[prior_set.name] = {**info, "failures_by_reason": failures, "by_threshold": {
            name: selection.summary(selection.at_threshold(cells, name)) for name, _ in thresholds}}
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({"prior_set": pa.array([], pa.string())})
    return table, summary


def _slug(name: str) -> str:
    """A variant name as a file-name prefix."""
    return name.replace("%", "pct")


def _sensitivity(aggregate, variant_tasks: dict[str, list], n_hosts: dict[str, int], thresholds, base: dict):
    """(sensitivity.parquet table, summary) of every variant against the unperturbed cells ``base``.

    Rows line up with ``base`` (the same cells in the same order, the same thresholds), so
    Delta C = C_variant - C_base per cell and threshold, with C = k/n; a cell empty in either is
    NaN and left out of the summary: mean Delta C, max |Delta C| and the (sample) standard
    deviation over cells, per variant and threshold (in completeness units, not per cent)."""
    columns: dict[str, list] = {}
    summary: dict[str, dict] = {}
    for name, tasks in variant_tasks.items():
        cells, _, failures = aggregate(tasks, n_hosts, thresholds)
        delta = cells["completeness"] - base["completeness"]
        block = {
            "variant": [name] * len(delta), "cell_id": base["cell_id"], "threshold_name": base["threshold_name"],
            **{axis: base[axis] for axis in ("theta_e", "psfsize_r", "depth_m5", "source_mag", "beta_frac")
               if axis in base},
            "n_ok_base": base["n_ok"], "n_detected_base": base["n_detected"], "completeness_base": base["completeness"],
            "n_ok": cells["n_ok"], "n_detected": cells["n_detected"], "completeness": cells["completeness"],
            "delta_completeness": delta,
        }
        for key, val in block.items():
            columns.setdefault(key, []).extend(np.asarray(val).tolist())
        per = {}
        for thr_name, _ in thresholds:
            d = delta[(base["threshold_name"] == thr_name) & np.isfinite(delta)]
            per[thr_name] = {"n_cells": int(d.size), "mean_delta": float(d.mean()) if d.size else None,
                             "max_abs_delta": float(np.abs(d).max()) if d.size else None,
                             "std_delta": float(d.std(ddof=1)) if d.size > 1 else None}
        summary[name] = {"by_threshold": per, "failures_by_reason": failures}
    return pa.table(columns), summary


def _flux_qa(table) -> dict[str, float | None]:
    """Flux bookkeeping of the injected arcs, from the rendered per-band fluxes in injections.parquet.

    ``magnification`` is the render's in-stamp lensed flux over the unlensed flux (before the
    PSF); ``arc_flux_r / source_flux_r`` is the same after the PSF, so their ratio is the fraction
    of the r-band arc the PSF keeps inside the stamp (1 when nothing spills out). The median
    rendered arc magnitude is the brightness the completeness bins actually saw.
    """
    import numpy as np

    if table is None:
        return {"n": 0}
    if "arc_flux_r" not in table.column_names or table.num_rows == 0:
        return {"n": int(table.num_rows)}
    arc_r = table.column("arc_flux_r").to_numpy(zero_copy_only=False).astype(float)
    src_r = table.column("source_flux_r").to_numpy(zero_copy_only=False).astype(float)
    mu = table.column("magnification").to_numpy(zero_copy_only=False).astype(float)
    kept = arc_r / (mu * src_r)
    ok = np.isfinite(kept) & (arc_r > 0)
    return {
        "n": int(table.num_rows),
        "median_magnification": float(np.median(mu)) if len(mu) else None,
        "median_arc_mag_r": float(np.median(22.5 - 2.5 * np.log10(arc_r[ok]))) if ok.any() else None,
        "psf_flux_in_stamp_median": float(np.median(kept[ok])) if ok.any() else None,
        "psf_flux_in_stamp_min": float(np.min(kept[ok])) if ok.any() else None,
    }
