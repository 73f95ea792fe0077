"""Integrity of a data directory: the check behind ``dhs data verify`` and the message every reader gives.

What is checked (docs/data.md, "Integrity"):

* ``store.json`` readable; for shards, ``index.parquet`` present and readable;
* every cutout the store holds: for shards its CRC-32 against the index (a missing shard file
  makes its cutouts ``missing``, rows past the end of a short one ``truncated``); for npz and
  FITS a full read, which checks the zip CRC-32 / FITS DATASUM where the file has one;
* every manifest row has its cutout (a row whose key the store lacks is ``missing``).

Damage found in a data directory the data stage wrote is a runtime failure — the stage had
checked every cutout, so the stored bytes changed afterwards (a bad disk, a partial copy, a
file edited in place) — and is raised as :class:`~dhs_core.errors.DataIntegrityError` (exit 1).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from dhs_core.errors import DataIntegrityError, UserError
from dhs_data.layout import MANIFEST, SHARD_INDEX, STORE_INFO

#: damaged cutouts named in one error message
SHOWN = 5


def by_reason(errors: Sequence) -> dict[str, int]:
    return dict(Counter(e.reason for e in errors))


def damage_error(data_dir: str | Path, errors: Sequence, n: int, *, what: str = "cutouts") -> DataIntegrityError:
    """One-line :class:`DataIntegrityError` naming the damaged cutouts and the command that lists them all."""
    shown = "; ".join(f"{e.key} ({e.reason})" for e in errors[:SHOWN])
    more = f" and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
    files = list(dict.fromkeys(e.path for e in errors if getattr(e, "path", None)))
    where = f" in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" if files else ""
    return DataIntegrityError(
        f"{data_dir}: {len(errors)} of {n} {what} are damaged {by_reason(errors)}{where}: {shown}{more}. The data stage "
        f"checked them when it wrote this directory, so the stored files changed since; run `dhs data verify "
        f"{data_dir}` for the full list, then restore the files or rerun the data stage"
    )


def is_data_dir(path: Path) -> bool:
    return path.is_dir() and ((path / STORE_INFO).is_file() or (path / MANIFEST).is_file())


def verify_data_dir(data_dir: str | Path, *, start: Callable[[int], None] | None = None,
                    advance: Callable[[int], None] | None = None) -> dict:
    """Check the whole data directory ``data_dir``; returns a summary (see module docstring).

    ``start(total)`` is called once the number of cutouts to check is known, ``advance(n)`` as
    they are checked. Raises :class:`UserError` when ``data_dir`` is not a data directory.
    """
    from dhs_data.manifest import read_manifest
    from dhs_data.stores import CutoutError, ShardStore, open_store, read_store_json
    from dhs_data.stores.shards import shard_name

    d = Path(data_dir)
    if not is_data_dir(d):
        raise UserError(f"{d} is not a data directory (it has no {STORE_INFO} or {MANIFEST}); pass the data/ "
                        "directory of a run or the output of `dhs data pack`")
    problems: list[dict] = []  # damage to the directory itself, not to one cutout
    damaged: list = []
    keys: list[str] | None = None
    try:
        keys = read_manifest(d / MANIFEST, validate=False).column("cutout_path").to_pylist()
    except (UserError, KeyError) as exc:
        problems.append({"reason": "manifest_missing" if not (d / MANIFEST).is_file() else "manifest_unreadable",
                         "detail": str(exc)})
    summary = {"data_dir": str(d), "format": None, "n_manifest_rows": None if keys is None else len(keys),
               "n_checked": 0}
    try:
        info = read_store_json(d)
    except (UserError, DataIntegrityError) as exc:
        problems.append({"reason": "store_json", "detail": str(exc)})
        return _finish(summary, problems, damaged)
    summary["format"] = info["format"]
    root = Path(info.get("root") or ".")
    root = root if root.is_absolute() else d / root
    if info["format"] == "shards":
        index = root / SHARD_INDEX
        if not index.is_file():
            problems.append({"reason": "index_missing", "detail": f"{index} does not exist"})
            return _finish(summary, problems, damaged)
        try:
            store = ShardStore(root, info.get("stamp"), verify="never")
        except DataIntegrityError as exc:
            problems.append({"reason": "index_unreadable", "detail": str(exc)})
            return _finish(summary, problems, damaged)
        for s in range(store.n_shards):
            if not (root / shard_name(s)).is_file():
                problems.append({"reason": "shard_missing", "detail": f"{root / shard_name(s)} does not exist"})
        if start is not None:
            start(len(store))
        damaged += store.verify(advance=advance)
        summary["n_checked"] = len(store)
        summary["n_shards"] = store.n_shards
        if keys is not None:
            in_index = set(store.keys())
            damaged += [CutoutError(k, "missing", f"manifest row without a cutout in {index.name}")
                        for k in keys if k not in in_index]
        return _finish(summary, problems, damaged)
    store = open_store(d)
    if keys is None:
        return _finish(summary, problems, damaged)
    if start is not None:
        start(len(keys))
    for key in keys:
        try:
            store.get(key)
        except CutoutError as exc:  # PathEscapeError included: reason outside_root
            damaged.append(exc)
        if advance is not None:
            advance(1)
    summary["n_checked"] = len(keys)
    return _finish(summary, problems, damaged)


def _finish(summary: dict, problems: list[dict], damaged: list) -> dict:
    reasons = Counter(p["reason"] for p in problems)
    reasons.update(e.reason for e in damaged)
    summary.update({
        "clean": not problems and not damaged,
        "n_damaged": len(damaged),
        "by_reason": dict(reasons),
        "problems": problems,
        "damaged": [{"key": e.key, "reason": e.reason, "detail": e.detail} for e in damaged],
    })
    return summary
