"""The ``injected`` data source: an injection-built training set (the Gen1 / Gen2 protocol).

1. **Hosts**: the non-lenses of another data source (rendered into a work directory first) or of
   an existing data directory, optionally only some Tractor types, at most ``n_hosts`` of them
   (first in hash order of galaxy_id, so the choice does not depend on manifest order).
2. **Rows** (:func:`dhs_inject.grids.build_injection_manifest`): a host is a control when the hash
   of its id falls below ``control_frac``; every other host gets ``configs_per_host`` grid
   configurations. Paired controls put the injected hosts themselves in the set un-injected.
   (host, configuration) pairs with theta_E / PSF FWHM below ``min_theta_over_psf`` are dropped
   and counted per configuration.
3. **Rendering** runs as executor tasks (one configuration's hosts, ``chunk_size`` at a time), each
   writing one file into a work directory under the run's ``.dhs/work``: a killed run resumes with
   the tasks it had not finished. The injector's prior is pinned per configuration (theta_E,
   source R_e, source axis ratio q = (1 - e) / (1 + e), shear); the source magnitude is the
   host's r magnitude plus ``src_dmag`` (per host, through the injector's ``overrides``). The
   host magnitude is the r-band flux in a circular aperture (``host_mag_aperture`` px) on the
   cutout itself, m = 22.5 - 2.5 log10(f / nanomaggy); a host with no positive flux there cannot
   set a relative magnitude and fails with reason ``host_flux_nonpositive``.
4. **Output**: a normal data directory — manifest (injections keep their host's position, PSF and
   depth, so the data stage's HEALPix split keeps a host and all its injections in one split),
   shard store, ``truth.parquet`` (configuration, drawn parameters, arc SNR; never a model input),
   ``injection_configs.parquet`` (per configuration: rows, failures, theta_E/PSF resolvability)
   and ``injected.json`` (counts and failures by reason). Failed injections are not in the
   manifest; they are counted, never written as blank or host-only positives.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dhs_core import io, plugins
from dhs_core.errors import UserError
from dhs_data.layout import MANIFEST, STORE_INFO, TRUTH
from dhs_data.manifest import SCHEMA, read_manifest, write_manifest
from dhs_data.stores import ShardWriter, open_store, write_store_json
from dhs_inject.injected.config import InjectedConfig

#: extra files of an injection-built data directory
CONFIGS_TABLE = "injection_configs.parquet"
SUMMARY = "injected.json"
#: host manifest columns handed to the injector (model2 reads type_bin)
HOST_META = ("galaxy_id", "psfsize_r", "psfdepth_r", "type_bin")
#: drawn parameters kept in the truth table
PARAMS = ("theta_e", "beta_frac", "src_r_mag", "src_r_e", "src_n", "src_q", "src_g_r", "src_r_z", "lens_q",
          "gamma_ext", "n_clumps")
#: theta_E / PSF FWHM bins of the resolvability statistics (the published Gen1 figures)
RESOLVABILITY_EDGES = (0.5, 1.0)


@dataclass(frozen=True)
class InjectTask:
    """One configuration's injections into a chunk of hosts (picklable: paths and plain data)."""

    output: str  # .npz written atomically; the executor skips the task when it exists
    data_dir: str  # the hosts' data directory
    host_keys: list[str]
    host_meta: dict[str, list] = field(default_factory=dict)
    injector: dict[str, Any] = field(default_factory=dict)  # resolved, prior pinned to the configuration
    config_id: int = 0
    src_dmag: float = 0.0
    aperture: float = 30.0
    seed: int = 0


def aperture_magnitude_r(hosts: np.ndarray, radius: float) -> np.ndarray:
    """r-band AB magnitude of the flux within ``radius`` px of the stamp centre (NaN where it is
    not positive); cutouts are in nanomaggies, zero point 22.5."""
    n_pix = hosts.shape[-1]
    c = (n_pix - 1) / 2.0
    yy, xx = np.mgrid[0:n_pix, 0:n_pix]
    inside = (xx - c) ** 2 + (yy - c) ** 2 <= min(radius, n_pix / 2.0) ** 2
    flux = hosts[:, 1][:, inside].sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(flux), np.nan)


def run_task(task: InjectTask) -> dict[str, Any]:
    """Render one task's injections into its file; returns its counts."""
    from dhs_data.stores import read_readable

    comp, cfg = plugins.resolve("injector", task.injector, where="data.injector")
    injector = comp.impl(cfg)
    store = open_store(task.data_dir)
    failures: dict[str, int] = {}
    hosts, readable, _ = read_readable(store, task.host_keys)
    meta = {k: np.asarray(v)[readable] for k, v in task.host_meta.items()}
    if not readable.all():
        failures["host_unreadable"] = int((~readable).sum())
    out: dict[str, np.ndarray] = {}
    if hosts is not None:
        host_mag = aperture_magnitude_r(hosts, task.aperture)
        bright = np.isfinite(host_mag)
        if not bright.all():
            failures["host_flux_nonpositive"] = int((~bright).sum())
            hosts, host_mag = hosts[bright], host_mag[bright]
            meta = {k: v[bright] for k, v in meta.items()}
        if len(hosts):
            rng = np.random.default_rng(task.seed)
            batch = injector.inject(hosts, meta, rng, overrides={"src_r_mag": host_mag + task.src_dmag})
            for reason, count in batch.failures.items():
                failures[reason] = failures.get(reason, 0) + int(count)
            finite = np.isfinite(batch.images).all(axis=(1, 2, 3))
            if not finite.all():  # an injector that breaks its protocol never gets NaN cutouts stored
                failures["nonfinite_result"] = failures.get("nonfinite_result", 0) + int((~finite).sum())
            host = batch.host_index[finite]
            out = {"images": batch.images[finite].astype(np.float32), "host_id": meta["galaxy_id"][host].astype(str),
                   "host_mag_r": host_mag[host], "arc_snr": batch.arc_snr[finite],
                   "magnification": batch.magnification[finite]}
            out.update({f"p_{k}": np.asarray(batch.params[k], float)[finite] for k in PARAMS if k in batch.params})
    counts = {"n_requested": len(task.host_keys), "n_ok": int(len(out.get("host_id", ()))),
              "failures": failures, "config_id": task.config_id}
    Path(task.output).parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(task.output) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, counts=np.asarray(json.dumps(counts)), **out)
    return counts


def _hash_order(ids: list[str], seed: int) -> np.ndarray:
    from dhs_inject.grids import hash_uniform

    return np.argsort(hash_uniform(ids, seed), kind="stable")


def _host_table(config: InjectedConfig, data_dir: Path, seed: int, log) -> tuple[pa.Table, dict[str, int]]:
    """The hosts used: non-lenses of the host manifest, of the allowed types, at most n_hosts."""
    table = read_manifest(data_dir / MANIFEST)
    counts = {"host_manifest_rows": table.num_rows}
    label = np.asarray(table.column("label").to_numpy(zero_copy_only=False), int)
    keep = label == 0
    counts["excluded_lenses"] = int((~keep).sum())
    if config.host_type_bins is not None:
        types = np.asarray(table.column("type_bin").to_pylist(), dtype=object)
        allowed = np.isin(types.astype(str), list(config.host_type_bins))
        counts["excluded_type_bin"] = int((keep & ~allowed).sum())
        keep &= allowed
    table = table.filter(pa.array(keep))
    if config.n_hosts is not None and table.num_rows > config.n_hosts:
        order = _hash_order(table.column("galaxy_id").to_pylist(), seed)[:config.n_hosts]
        counts["excluded_n_hosts"] = table.num_rows - config.n_hosts
        table = table.take(pa.array(np.sort(order)))
    if table.num_rows == 0:
        raise UserError(f"data.injected: no hosts left in {data_dir} ({counts}); hosts are non-lenses (label 0)"
                        + (f" of type {list(config.host_type_bins)}" if config.host_type_bins else ""))
    counts["hosts"] = table.num_rows
    log(f"injected: {table.num_rows} hosts from {data_dir}")
    return table, counts


def _pinned_injector(config: InjectedConfig, cfg_row: dict[str, float]) -> dict[str, Any]:
    """The injector entry with its prior pinned to one grid configuration (no retries on other
    hosts: each row of the set is one host's injection)."""
    comp, cfg = plugins.resolve("injector", config.injector, where="data.injector")
    if "prior" not in type(cfg).model_fields:
        raise UserError(f"data.injector {comp.name!r} has no 'prior' option, so the grid cannot set theta_E, the "
                        "source size and shape per configuration; use an injector built on dhs_inject's "
                        "InjectorConfig (model1, model2)")
    entry = {**cfg.model_dump(mode="json"), "name": comp.name, "max_retries": 0}
    q = (1.0 - cfg_row["src_e"]) / (1.0 + cfg_row["src_e"])
    entry["prior"] = {**entry["prior"], "theta_e": [cfg_row["theta_e"]] * 2, "src_r_e": [cfg_row["src_reff"]] * 2,
                      "src_q": [q, q], "shear": [cfg_row["shear"]] * 2}
    plugins.resolve("injector", entry, where="data.injector")  # the pinned prior validates here, not in a worker
    return entry


def _hosts_data_dir(config: InjectedConfig, ctx: Any, work: Path) -> Path:
    """The hosts' data directory: ``hosts_dir``, or the nested source rendered into the work
    directory (reused when a killed run is resumed)."""
    if config.hosts_dir is not None:
        path = Path(config.hosts_dir)
        for name in (MANIFEST, STORE_INFO):
            if not (path / name).is_file():
                raise UserError(f"data.hosts_dir = {config.hosts_dir!r}: {path / name} does not exist; hosts_dir is a "
                                "data directory (e.g. runs/<name>/data of a run with a data stage)")
        return path
    done = work / "hosts"
    if (done / MANIFEST).is_file() and (done / STORE_INFO).is_file():
        ctx.log(f"injected: reusing the hosts rendered in {done}")
        return done
    comp, hosts_cfg = plugins.resolve("data_source", config.hosts, where="data.hosts")
    staging = work / "hosts.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    ctx.log(f"injected: building the hosts with data source {comp.name!r}")
    comp.impl(hosts_cfg, ctx, staging)
    staging.rename(done)
    return done


def injected_source(config: InjectedConfig, ctx: Any, out_dir: Path) -> None:
    """Write the injection-built training set into ``out_dir`` (manifest, shards, truth)."""
    from dhs_inject.grids import build_injection_manifest, grid_configs

    out_dir = Path(out_dir)
    seed = ctx.seed_for("injected")
    digest = hashlib.sha256(json.dumps([config.model_dump(mode="json"), seed], sort_keys=True).encode()).hexdigest()
    work = Path(ctx.run_dir) / ".dhs" / "work" / f"injected-{digest[:16]}"
    work.mkdir(parents=True, exist_ok=True)
    data_dir = _hosts_data_dir(config, ctx, work)
    hosts, host_counts = _host_table(config, data_dir, seed, ctx.log)
    host_ids = [str(g) for g in hosts.column("galaxy_id").to_pylist()]
    row_of = {g: i for i, g in enumerate(host_ids)}
    grid = grid_configs(config.grid if isinstance(config.grid, str) else config.grid_table())
    n_cfg = len(grid["config_id"])
    rows = build_injection_manifest(host_ids, grid, control_frac=config.control_frac, seed=seed,
                                    paired_controls=config.controls == "paired",
                                    configs_per_host=None if config.configs_per_host == "all" else config.configs_per_host)
    psf = np.asarray(hosts.column("psfsize_r").to_numpy(zero_copy_only=False), float)
    injected = np.flatnonzero(rows["label"] == 1)
    inj_host = np.asarray([row_of[g] for g in rows["galaxy_id"][injected]], int)
    ratio = rows["theta_e"][injected] / psf[inj_host]
    resolvable = ~(ratio < config.min_theta_over_psf)  # NaN PSF: kept, and counted as unknown below
    stats = _resolvability(rows["config_id"][injected], ratio, resolvable, n_cfg)
    if not resolvable.all():
        ctx.log(f"injected: {int((~resolvable).sum())} (host, configuration) pairs dropped by "
                f"min_theta_over_psf = {config.min_theta_over_psf}")
    injected, inj_host = injected[resolvable], inj_host[resolvable]

    # tasks: one configuration's hosts, chunk_size at a time, each with its own seed
    meta_cols = {c: hosts.column(c).to_pylist() for c in HOST_META if c in hosts.column_names}
    tasks: list[InjectTask] = []
    for cid in range(n_cfg):
        mine = inj_host[rows["config_id"][injected] == cid]
        if not len(mine):
            continue
        cfg_row = {a: float(grid[a][cid]) for a in ("theta_e", "src_dmag", "src_reff", "src_e", "shear")}
        entry = _pinned_injector(config, cfg_row)
        for c, start in enumerate(range(0, len(mine), config.chunk_size)):
            part = mine[start:start + config.chunk_size]
            task_seed = int(np.random.SeedSequence([seed, cid, c]).generate_state(1)[0])
            tasks.append(InjectTask(
                output=str(work / "tasks" / f"c{cid:05d}_{c:05d}.npz"), data_dir=str(data_dir),
                host_keys=[str(k) for k in np.asarray(hosts.column("cutout_path").to_pylist(), object)[part]],
                host_meta={k: [v[i] for i in part] for k, v in meta_cols.items()}, injector=entry, config_id=cid,
                src_dmag=cfg_row["src_dmag"], aperture=config.host_mag_aperture, seed=task_seed))
    results = ctx.executor.map(run_task, tasks, progress=ctx.progress, desc=f"injecting ({len(tasks)} tasks)")
    resumed = getattr(ctx.executor, "last_stats", {}).get("skipped", 0)
    if resumed:
        ctx.log(f"injected: {resumed} of {len(tasks)} tasks were finished by an earlier run and are reused")
    _assemble(config, tasks, results, rows, hosts, data_dir, grid, stats, host_counts, out_dir, ctx)
    shutil.rmtree(work, ignore_errors=True)


def _resolvability(config_id: np.ndarray, ratio: np.ndarray, kept: np.ndarray, n_cfg: int) -> dict[str, np.ndarray]:
    """Per configuration: pairs planned and dropped, and theta_E / PSF FWHM statistics."""
    lo, hi = RESOLVABILITY_EDGES
    out = {k: np.zeros(n_cfg) for k in ("n_planned", "n_dropped_min_theta_over_psf", "theta_over_psf_median",
                                        "frac_theta_over_psf_lt_0p5", "frac_theta_over_psf_0p5_1",
                                        "frac_theta_over_psf_ge_1")}
    for cid in range(n_cfg):
        r = ratio[config_id == cid]
        out["n_planned"][cid] = r.size
        out["n_dropped_min_theta_over_psf"][cid] = int((~kept[config_id == cid]).sum())
        r = r[np.isfinite(r)]
        if r.size == 0:
            for k in ("theta_over_psf_median", "frac_theta_over_psf_lt_0p5", "frac_theta_over_psf_0p5_1",
                      "frac_theta_over_psf_ge_1"):
                out[k][cid] = np.nan
            continue
        out["theta_over_psf_median"][cid] = float(np.median(r))
        out["frac_theta_over_psf_lt_0p5"][cid] = float(np.mean(r < lo))
        out["frac_theta_over_psf_0p5_1"][cid] = float(np.mean((r >= lo) & (r < hi)))
        out["frac_theta_over_psf_ge_1"][cid] = float(np.mean(r >= hi))
    return out


def _assemble(config: InjectedConfig, tasks: list[InjectTask], results: list[dict[str, Any]], rows, hosts: pa.Table,
              data_dir: Path, grid, stats, host_counts: dict[str, int], out_dir: Path, ctx: Any) -> None:
    """Stream the task files and the controls into one shard store; write manifest, truth, tables."""
    from dhs_data.stores import read_readable

    store = open_store(data_dir)
    stamp = int(store.get(str(hosts.column("cutout_path")[0].as_py())).shape[-1])
    writer = ShardWriter(out_dir / "shards", stamp)
    host_rows = {str(g): i for i, g in enumerate(hosts.column("galaxy_id").to_pylist())}
    take: list[int] = []  # host row of each output row
    manifest_extra: dict[str, list] = {"galaxy_id": [], "label": []}
    truth: dict[str, list] = {k: [] for k in ("galaxy_id", "host_id", "is_injection", "config_id", "theta_e_grid",
                                              "src_dmag", "src_reff", "src_e", "shear", "host_mag_r", "arc_snr",
                                              "magnification", "theta_over_psf", *PARAMS)}
    failures: dict[str, int] = {}
    ok_per_config, failed_per_config = np.zeros(len(grid["config_id"])), np.zeros(len(grid["config_id"]))
    psf = np.asarray(hosts.column("psfsize_r").to_numpy(zero_copy_only=False), float)

    def add_truth(gid: str, host: str, inj: bool, cid: int, values: dict[str, float]) -> None:
        truth["galaxy_id"].append(gid)
        truth["host_id"].append(host)
        truth["is_injection"].append(inj)
        truth["config_id"].append(cid)
        for k in truth:
            if k not in ("galaxy_id", "host_id", "is_injection", "config_id"):
                truth[k].append(values.get(k, np.nan))

    bar = ctx.progress.task("writing the injected set", total=len(tasks) + 1)
    try:
        for task, counts in zip(tasks, results):
            with np.load(task.output) as f:
                counts = json.loads(str(f["counts"]))
                data = {k: f[k] for k in f.files if k != "counts"}
            for reason, n in counts["failures"].items():
                failures[reason] = failures.get(reason, 0) + int(n)
            cid = task.config_id
            failed_per_config[cid] += sum(counts["failures"].values())
            ok_per_config[cid] += counts["n_ok"]
            axes = {"theta_e_grid": float(grid["theta_e"][cid]), "src_dmag": float(grid["src_dmag"][cid]),
                    "src_reff": float(grid["src_reff"][cid]), "src_e": float(grid["src_e"][cid]),
                    "shear": float(grid["shear"][cid])}
            for j, host in enumerate(data.get("host_id", [])):
                host = str(host)
                gid = f"{host}~c{cid:05d}"
                writer.add(gid, data["images"][j])
                take.append(host_rows[host])
                manifest_extra["galaxy_id"].append(gid)
                manifest_extra["label"].append(1)
                values = {**axes, "host_mag_r": float(data["host_mag_r"][j]), "arc_snr": float(data["arc_snr"][j]),
                          "magnification": float(data["magnification"][j]),
                          "theta_over_psf": axes["theta_e_grid"] / psf[host_rows[host]],
                          **{k: float(data[f"p_{k}"][j]) for k in PARAMS if f"p_{k}" in data}}
                add_truth(gid, host, True, cid, values)
            bar.advance()
        controls = [str(g) for g in rows["galaxy_id"][rows["label"] == 0]]
        keys = np.asarray(hosts.column("cutout_path").to_pylist(), object)
        for start in range(0, len(controls), 256):
            part = controls[start:start + 256]
            images, readable, _ = read_readable(store, [str(keys[host_rows[g]]) for g in part])
            if not readable.all():
                failures["control_unreadable"] = failures.get("control_unreadable", 0) + int((~readable).sum())
            for g, image in zip([g for g, ok in zip(part, readable) if ok], images if images is not None else []):
                writer.add(g, image)
                take.append(host_rows[g])
                manifest_extra["galaxy_id"].append(g)
                manifest_extra["label"].append(0)
                add_truth(g, g, False, -1, {})
        bar.advance()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    if not manifest_extra["galaxy_id"]:
        raise UserError(f"data.injected: no injection succeeded and there are no controls (failures: {failures})")
    manifest = hosts.take(pa.array(take, pa.int64()))
    n = manifest.num_rows
    label = np.asarray(manifest_extra["label"], np.int8)
    columns = {name: manifest.column(name) if name in manifest.column_names else pa.nulls(n, SCHEMA.field(name).type)
               for name in SCHEMA.names}
    columns["galaxy_id"] = pa.array(manifest_extra["galaxy_id"], pa.string())
    columns["cutout_path"] = columns["galaxy_id"]
    columns["label"] = pa.array(label, pa.int8())
    columns["split"] = pa.nulls(n, pa.string())  # the data stage splits by HEALPix of the host
    columns["healpix_128"] = pa.nulls(n, pa.int64())
    positive = label == 1
    # injections are positives of no survey pool or tier: their truth is in truth.parquet
    for name in ("pool", "confuser_category", "tier"):
        values = np.asarray(columns[name].to_pylist(), dtype=object)
        values[positive] = None
        columns[name] = pa.array(values.tolist(), pa.string())
    columns["sample_weight"] = pa.array(np.ones(n), pa.float64())
    write_store_json(out_dir, format="shards", root="shards", stamp=stamp)
    write_manifest(pa.table(columns, schema=SCHEMA), out_dir / MANIFEST)
    with io.atomic_path(out_dir / TRUTH) as tmp:
        pq.write_table(pa.table(truth), tmp)
    table = {"config_id": np.asarray(grid["config_id"], int),
             **{a: np.asarray(grid[a], float) for a in ("theta_e", "src_dmag", "src_reff", "src_e", "shear")},
             "n_ok": ok_per_config, "n_failed": failed_per_config, **stats}
    with io.atomic_path(out_dir / CONFIGS_TABLE) as tmp:
        pq.write_table(pa.table(table), tmp)
    n_inj, n_ctrl = int(positive.sum()), int((~positive).sum())
    summary = {"grid": config.grid if isinstance(config.grid, str) else "table", "n_configs": len(grid["config_id"]),
               "controls": config.controls, "n_injections": n_inj, "n_controls": n_ctrl,
               "control_fraction": n_ctrl / max(1, n_inj + n_ctrl), "hosts": host_counts,
               "failures_by_reason": failures,
               "n_dropped_min_theta_over_psf": int(stats["n_dropped_min_theta_over_psf"].sum()),
               "min_theta_over_psf": config.min_theta_over_psf,
               "theta_over_psf": _overall_resolvability(truth)}
    io.write_json(out_dir / SUMMARY, summary)
    ctx.log(f"injected: {n_inj} injections, {n_ctrl} controls ({config.controls}); failures {failures or 'none'}")


def _overall_resolvability(truth: dict[str, list]) -> dict[str, float]:
    """theta_E / PSF FWHM over every stored injection, in the published bins."""
    r = np.asarray([v for v, inj in zip(truth["theta_over_psf"], truth["is_injection"]) if inj], float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return {"n": 0}
    lo, hi = RESOLVABILITY_EDGES
    return {"n": int(r.size), "median": float(np.median(r)), "frac_lt_0p5": float(np.mean(r < lo)),
            "frac_0p5_1": float(np.mean((r >= lo) & (r < hi))), "frac_ge_1": float(np.mean(r >= hi))}
