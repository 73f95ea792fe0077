"""Scoring a survey: every cutout of a data store through a trained finder, by shard.

The store's manifest is cut into shards of ``shard_size`` cutouts, one executor task each
(:class:`ShardTask`); a task writes one parquet file atomically, so the executor skips finished
shards and a killed job resumes by shard. A shard scores through
:func:`dhs_models.inference.load_finder` and :meth:`Finder.score` — the train stage's own path —
so float32 CPU scores are bit-identical to ``train/scores.parquet``.

A cutout the store cannot read (a :class:`~dhs_data.stores.base.CutoutError`: missing,
truncated, non-finite pixels, ...) or whose score is NaN is never scored: its row keeps a null
score and the reason in ``status``, and the summary counts it by reason. A zero or NaN score
standing in for an unreadable cutout would be a silent non-detection.

``score.json`` is written first and records the checkpoint's SHA-256: an output directory holding
another checkpoint's shards is refused (or, with ``force``, cleared), so two checkpoints' scores
are never mixed in one table.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from dhs_core.errors import UserError
from dhs_core.io import atomic_path, sha256_file, write_json
from dhs_data.stores.base import READABLE
from dhs_models.layout import CANDIDATES, SCORE_INFO, SCORE_SHARD, SCORE_SUMMARY, SCORE_TABLE

#: ``status`` of a validly scored cutout; any other status is a reason it was not scored
OK = READABLE
#: status of a readable cutout for which the network gave NaN
NONFINITE_SCORE = "nonfinite_score"
#: above this many cutouts scores.parquet is a directory of parts (a parquet dataset) of this many rows
DATASET_ROWS = 10_000_000
#: score quantiles reported in the summary
QUANTILES = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)


@dataclass(frozen=True)
class ShardTask:
    """One shard of the survey (picklable: paths and lists only; the finder loads in the worker)."""

    output: str  # the shard's parquet; the executor skips the task when it exists
    checkpoint: str
    data_dir: str  # the data directory (manifest + store.json)
    galaxy_ids: list[str]
    keys: list[str]  # cutout_path of each cutout
    meta: dict[str, list] = field(default_factory=dict)  # manifest columns the network fuses
    batch_size: int = 64  # cutouts read and scored together (bounds memory whatever the shard size)
    device: str = "cpu"  # resolved device ("cpu", "cuda")
    precision: str = "fp32"


def score_shard(task: ShardTask) -> dict[str, Any]:
    """Score one shard and write its parquet (galaxy_id, score, status); returns its counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dhs_data.stores import open_store, read_readable
    from dhs_models.inference import load_finder

    finder = load_finder(task.checkpoint, device=task.device)
    store = open_store(task.data_dir)
    n = len(task.keys)
    scores = np.full(n, np.nan)
    status = np.empty(n, object)
    meta_all = (np.column_stack([np.asarray(task.meta[c], np.float32) for c in finder.metadata_columns])
                if finder.metadata_columns else None)
    for start in range(0, n, task.batch_size):
        rows = np.arange(start, min(start + task.batch_size, n))
        images, readable, batch_status = read_readable(store, [task.keys[i] for i in rows])
        status[rows] = batch_status
        ok = rows[readable]
        if images is not None and len(ok):
            meta = None if meta_all is None else meta_all[ok]
            scores[ok] = finder.score(images, meta=meta, batch_size=task.batch_size, precision=task.precision)
    nan = (status == OK) & ~np.isfinite(scores)
    status[nan] = NONFINITE_SCORE
    scored = status == OK
    table = pa.table({
        "galaxy_id": pa.array(task.galaxy_ids, pa.string()),
        "score": pa.array(np.where(scored, scores, 0.0), pa.float64(), mask=~scored),
        "status": pa.array(status.tolist(), pa.string()),
    })
    with atomic_path(task.output) as tmp:
        pq.write_table(table, tmp)
    return {"n": n, "n_scored": int(scored.sum())}


def resolve_data_dir(data: str | Path) -> Path:
    """The data directory of ``data``: the directory itself, or the one holding a manifest file."""
    path = Path(data)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise UserError(f"--data {str(data)!r}: no such data directory or manifest")
    return path


def _check_stamp(finder: Any, store_info: dict, checkpoint: Path, data_dir: Path) -> None:
    trained = ((finder.info.get("spec") or {}).get("data") or {}).get("stamp")
    stamp = store_info.get("stamp")
    if trained is not None and stamp is not None and int(trained) != int(stamp):
        raise UserError(f"checkpoint {str(checkpoint)!r} was trained on {trained}-px cutouts but the store of "
                        f"{str(data_dir)!r} holds {stamp}-px cutouts; score a store of the training stamp size "
                        "(or retrain on this one)")


def _prepare_out(out: Path, info: dict, *, force: bool, replace_stale: bool, log: Callable[[str], None]) -> None:
    """Refuse (or clear) another checkpoint's shards; clear shards of other settings; write score.json."""
    path = out / SCORE_INFO
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} is not empty and holds no {SCORE_INFO}: it is not a scoring directory; choose "
                        "another --out")
    if old is not None and old != info:
        if old.get("checkpoint_sha256") != info["checkpoint_sha256"] and not (force or replace_stale):
            raise UserError(f"{out} holds scores of another checkpoint (SHA-256 {str(old.get('checkpoint_sha256'))[:12]}…, "
                            f"not {info['checkpoint_sha256'][:12]}… of {info['checkpoint']}); pass --force to "
                            "replace them or choose another --out")
        log(f"{out}: scores of other settings ({_changed(old, info)}) are replaced")
    if force or (old is not None and old != info):
        for name in (SCORE_TABLE, SCORE_SUMMARY, CANDIDATES):
            _remove(out / name)
        shutil.rmtree(out / Path(SCORE_SHARD).parent, ignore_errors=True)
    write_json(path, info)


def _remove(path: Path) -> None:
    """Remove a file or a directory (``scores.parquet`` is a directory of parts when large)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class _ScoreTableWriter:
    """Appends shard tables to ``scores.parquet``: one file, or, with ``part_rows``, a directory
    of that name holding ``part-NNNNN.parquet`` files of at most ``part_rows`` rows each (whole
    shards; one part may hold more when a single shard does). ``pyarrow.parquet.read_table`` and
    ``pyarrow.dataset`` read either form. Built beside the target, which it replaces on ``close``."""

    def __init__(self, target: Path, part_rows: int | None) -> None:
        self.target, self.part_rows = target, part_rows
        self.tmp = target.with_name(f".{target.name}.tmp")
        _remove(self.tmp)
        if part_rows is not None:
            self.tmp.mkdir(parents=True)
        self.writer: Any = None
        self.part, self.rows_in_part, self.rows = 0, 0, 0

    def write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self.part_rows is not None and self.writer is not None and \
                self.rows_in_part + table.num_rows > self.part_rows:
            self.writer.close()
            self.writer, self.part, self.rows_in_part = None, self.part + 1, 0
        if self.writer is None:
            path = self.tmp if self.part_rows is None else self.tmp / f"part-{self.part:05d}.parquet"
            self.writer = pq.ParquetWriter(path, table.schema)
        self.writer.write_table(table)
        self.rows_in_part += table.num_rows
        self.rows += table.num_rows

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.close()
        if not (ok and self.rows):
            _remove(self.tmp)
            return
        from dhs_core import faults

        for path in [self.tmp] if self.tmp.is_file() else sorted(self.tmp.iterdir()):
            with open(path, "rb+") as fh:  # on disk before the rename makes it the table
                os.fsync(fh.fileno())
        faults.point("before", self.target)  # the write points of every atomic write (dhs_core.io)
        _remove(self.target)
        os.replace(self.tmp, self.target)
        faults.point("after", self.target)


def _changed(old: dict, new: dict) -> str:
    return ", ".join(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)) or "unknown"


def fpr_thresholds(run_dir: Path, fprs: Sequence[float]) -> list[dict[str, Any]]:
    """Thresholds for target FPRs from the run's validation negatives (train/scores.parquet + labels)."""
    import pyarrow.parquet as pq

    from dhs_data import layout as data_layout
    from dhs_eval.errors import MetricInputError
    from dhs_eval.selection import threshold_at_fpr
    from dhs_models.layout import ARTIFACTS

    scores_path = run_dir / ARTIFACTS["scores"]
    manifest = run_dir / data_layout.DATA_DIR / data_layout.MANIFEST
    for p in (scores_path, manifest):
        if not p.is_file():
            raise UserError(f"--fpr needs the run's validation scores and labels, but {p} does not exist")
    scores = pq.read_table(scores_path, columns=["galaxy_id", "split", "score"]).to_pydict()
    labels = pq.read_table(manifest, columns=["galaxy_id", "label"]).to_pydict()
    label_of = dict(zip(labels["galaxy_id"], labels["label"]))
    negatives = [s if s is not None else np.nan for g, sp, s in zip(scores["galaxy_id"], scores["split"], scores["score"])
                 if sp == "val" and label_of.get(g) == 0]
    out = []
    for fpr in fprs:
        try:
            t = threshold_at_fpr(negatives, float(fpr)).as_dict()
        except MetricInputError as exc:
            raise UserError(f"--fpr {fpr}: {exc}") from None
        # NaN (no valid negatives) as null: summary.json stays strict JSON
        out.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in t.items()})
    return out


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def run_scoring(checkpoint: str | Path, data: str | Path, out: str | Path, *, executor: Any = None,
                device: str = "auto", precision: str = "fp32", shard_size: int = 4096, batch_size: int = 64,
                top_k: int = 100, fprs: Sequence[float] = (), run_dir: str | Path | None = None,
                force: bool = False, replace_stale: bool = False, progress: Any = None,
                dataset_rows: int = DATASET_ROWS, device_option: str = "--device",
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score every cutout of ``data`` with ``checkpoint`` into ``out``; returns the summary.

    ``fprs`` need ``run_dir`` (thresholds come from its validation negatives). A store of more
    than ``dataset_rows`` cutouts gets ``scores.parquet`` as a directory of parts of at most that
    many rows (a parquet dataset), so no single file grows with the survey. ``force`` clears
    what ``out`` holds; ``replace_stale`` (the score stage, which owns its directory) replaces
    another checkpoint's shards instead of refusing them.
    """
    import pyarrow.parquet as pq

    from dhs_core.executors import LocalExecutor
    from dhs_data.layout import MANIFEST
    from dhs_data.stores import read_store_json
    from dhs_models.inference import PRECISIONS, load_finder, require_device

    if dataset_rows < 1:
        raise UserError(f"dataset rows ({dataset_rows}) must be >= 1")
    if shard_size < 1 or batch_size < 1 or top_k < 0:
        raise UserError(f"shard size ({shard_size}) and batch size ({batch_size}) must be >= 1 and top-k "
                        f"({top_k}) >= 0")
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if fprs and run_dir is None:
        raise UserError("FPR thresholds come from a run's validation negatives: give the run directory (--run)")
    dev = require_device(device, what=device_option)  # the refusal names the option or spec field
    # absolute paths in the tasks: a worker may run in another directory (a batch job, a Dask worker)
    checkpoint, out = Path(checkpoint).absolute(), Path(out).absolute()
    data_dir = resolve_data_dir(data).absolute()
    store_info = read_store_json(data_dir)
    finder = load_finder(checkpoint, device=dev)
    _check_stamp(finder, store_info, checkpoint, data_dir)
    manifest = pq.read_table(data_dir / MANIFEST, columns=["galaxy_id", "cutout_path", *finder.metadata_columns])
    n_rows = manifest.num_rows
    info = {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": sha256_file(checkpoint),
            "data_dir": str(data_dir.resolve()), "n_cutouts": n_rows, "shard_size": int(shard_size),
            # the CPU always scores in float32, whatever was asked: the record says what ran
            "device": dev.type, "precision": precision if dev.type == "cuda" else "fp32"}
    _prepare_out(out, info, force=force, replace_stale=replace_stale, log=log)
    thresholds = fpr_thresholds(Path(run_dir), fprs) if fprs else []

    ids = manifest.column("galaxy_id").to_pylist()
    keys = manifest.column("cutout_path").to_pylist()
    meta = {c: manifest.column(c).to_pylist() for c in finder.metadata_columns}
    del manifest
    tasks = [ShardTask(output=str(out / SCORE_SHARD.format(index=i)), checkpoint=str(checkpoint),
                       data_dir=str(data_dir), galaxy_ids=ids[a:a + shard_size], keys=keys[a:a + shard_size],
                       meta={c: v[a:a + shard_size] for c, v in meta.items()}, batch_size=batch_size,
                       device=str(dev), precision=precision)
             for i, a in enumerate(range(0, n_rows, shard_size))]
    del ids, keys, meta
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    results = executor.map(score_shard, tasks, progress=progress, desc="scoring shards")
    elapsed = time.perf_counter() - t0
    n_new = sum(r["n"] for r in results if r)
    part_rows = dataset_rows if n_rows > dataset_rows else None
    summary = combine([Path(t.output) for t in tasks], out, top_k=top_k, thresholds=thresholds, part_rows=part_rows)
    summary.update({
        **info, "n_shards": len(tasks), "resumed_shards": int(executor.last_stats.get("skipped", 0)),
        "shards_run": int(executor.last_stats.get("run", 0)), "batch_size": int(batch_size),
        "cutouts_scored_now": n_new,
        "scores_layout": "file" if part_rows is None else f"dataset of parts of <= {part_rows} rows",
        # of the shards scored by this call (None when every shard was already done)
        "throughput_cutouts_per_s": (n_new / elapsed) if n_new and elapsed > 0 else None,
    })
    write_json(out / SCORE_SUMMARY, summary)
    return summary


def order_statistics(chunks: Callable[[], Iterable[np.ndarray]], n: int, ranks: Iterable[int], *,
                     cap: int = 1 << 20) -> dict[int, float]:
    """Exact order statistics (0-based ranks of the ascending order) of ``n`` values >= 0.

    ``chunks()`` yields the values afresh on every call (e.g. shard by shard from disk). Memory
    stays bounded whatever ``n``: a radix selection on the float64 bit patterns, which order as
    the non-negative values do. Each pass histograms the next 16 bits of the keys that share
    a wanted rank's prefix so far (65,536 counters), and a prefix holding at most ``cap`` values is
    read and sorted; four passes at most, ties included (equal values have equal keys).
    """
    radix, width = 1 << 16, 16
    pending: dict[int, tuple[int, int, int, int]] = {}  # rank -> (prefix, shift, keys below, keys in)
    for r in ranks:
        if not 0 <= r < n:
            raise ValueError(f"rank {r} outside 0..{n - 1}")
        pending[int(r)] = (0, 64, 0, n)  # shift 64: the empty prefix, every key
    found: dict[int, float] = {}

    def keys_of(chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, np.float64) + 0.0  # -0.0 -> 0.0
        if x.size and not x.min() >= 0:
            raise ValueError("order_statistics takes values >= 0 (scores are probabilities)")
        return x.view(np.int64)

    def member(keys: np.ndarray, prefix: int, shift: int) -> np.ndarray:
        return keys if shift == 64 else keys[(keys >> shift) == prefix]

    while pending:
        groups = sorted({(p, s, c) for p, s, _, c in pending.values()})
        collect = {(p, s): [] for p, s, c in groups if c <= cap or s == 0}
        hist = {(p, s): np.zeros(radix, np.int64) for p, s, c in groups if c > cap and s > 0}
        for chunk in chunks():
            keys = keys_of(chunk)
            for (p, s), parts in collect.items():
                if s > 0:  # at shift 0 the prefix is the whole key: every member is equal
                    parts.append(member(keys, p, s))
            for (p, s), h in hist.items():
                h += np.bincount((member(keys, p, s) >> (s - width)) & (radix - 1), minlength=radix)
        for r, (p, s, below, _) in list(pending.items()):
            if (p, s) in collect:
                key = p if s == 0 else np.sort(np.concatenate(collect[(p, s)]))[r - below]
                found[r] = float(np.int64(key).view(np.float64))
                del pending[r]
                continue
            cum = np.cumsum(hist[(p, s)])
            j = int(np.searchsorted(cum, r - below, side="right"))
            child = j if s == 64 else (p << width) | j
            pending[r] = (child, s - width, below + (int(cum[j - 1]) if j else 0), int(hist[(p, s)][j]))
    return found


def quantiles(chunks: Callable[[], Iterable[np.ndarray]], n: int, qs: Sequence[float]) -> dict[float, float]:
    """``np.quantile(values, q)`` (linear interpolation) for each q, from :func:`order_statistics`
    of probabilities in [0, 1], without holding the values."""
    if n == 0:
        return {}
    pos = {q: q * (n - 1) for q in qs}
    ranks = {r for p in pos.values() for r in (int(np.floor(p)), int(np.ceil(p)))}
    stats = order_statistics(chunks, n, ranks)
    out = {}
    for q, p in pos.items():
        f, c = int(np.floor(p)), int(np.ceil(p))
        out[q] = stats[f] + (p - f) * (stats[c] - stats[f])
    return out


def combine(shards: Sequence[Path], out: Path, *, top_k: int, thresholds: list[dict[str, Any]],
            part_rows: int | None = None) -> dict[str, Any]:
    """Concatenate the shards into scores.parquet and write candidates.parquet; the summary's counts.

    Streams one shard at a time (a ParquetWriter appends it), keeping only the running top-K and
    the counts; the quantiles are exact, from further passes over the shards' score columns
    (:func:`quantiles`), so memory does not grow with the number of cutouts.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_status: dict[str, int] = {}
    n_above = [0] * len(thresholds)
    top_score, top_row, top_id = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, object)
    row0 = 0
    writer = _ScoreTableWriter(out / SCORE_TABLE, part_rows)
    done = False
    try:
        for path in shards:
            table = pq.read_table(path)
            writer.write(table)
            status = np.asarray(table.column("status").to_pylist(), object)
            for s, k in zip(*np.unique(status, return_counts=True)):
                by_status[str(s)] = by_status.get(str(s), 0) + int(k)
            ok = np.flatnonzero(status == OK)
            score = table.column("score").to_numpy(zero_copy_only=False)[ok].astype(np.float64)
            for j, t in enumerate(thresholds):
                if t["threshold"] is not None and np.isfinite(t["threshold"]):
                    n_above[j] += int(np.sum(score >= t["threshold"]))
            ids = np.asarray(table.column("galaxy_id").to_pylist(), object)[ok]
            top_score = np.concatenate([top_score, score])
            top_row = np.concatenate([top_row, ok + row0])
            top_id = np.concatenate([top_id, ids])
            # highest score first, ties in manifest order: the order of a stable descending sort
            keep = np.lexsort((top_row, -top_score))[:top_k]
            top_score, top_row, top_id = top_score[keep], top_row[keep], top_id[keep]
            row0 += table.num_rows
        if not writer.rows:
            raise UserError("the data directory's manifest has no cutouts: nothing to score")
        done = True
    finally:
        writer.close(done)
    with atomic_path(out / CANDIDATES) as tmp:
        pq.write_table(pa.table({"rank": pa.array(np.arange(1, len(top_score) + 1), pa.int64()),
                                 "galaxy_id": pa.array(top_id.tolist(), pa.string()),
                                 "score": pa.array(top_score, pa.float64()),
                                 "row": pa.array(top_row, pa.int64())}), tmp)
    n_scored = by_status.pop(OK, 0)

    def valid_scores() -> Iterable[np.ndarray]:
        for path in shards:
            table = pq.read_table(path, columns=["score", "status"])
            ok = np.asarray(table.column("status").to_pylist(), object) == OK
            yield table.column("score").to_numpy(zero_copy_only=False)[ok].astype(np.float64)

    return {
        "n_scored": n_scored, "n_failed": sum(by_status.values()), "failed_by_reason": dict(sorted(by_status.items())),
        "quantiles": {str(q): _finite(v) for q, v in quantiles(valid_scores, n_scored, QUANTILES).items()},
        "thresholds": [{**t, "n_above": n} for t, n in zip(thresholds, n_above)], "top_k": int(top_k),
    }
