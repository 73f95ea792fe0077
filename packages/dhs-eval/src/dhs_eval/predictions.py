"""Join the model's scores with the manifest (and simulation truth) into one predictions table.

``train/scores.parquet`` holds (galaxy_id, split, score); the labels and strata live in
``data/manifest.parquet``; theta_E and other simulated quantities, when the data are simulated, in
``data/truth.parquet``. Truth is joined for stratification only — it is never a model input.
A scored cutout missing from the manifest is an error (the two artifacts come from different runs),
not a row to drop silently.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dhs_core.errors import UserError

#: manifest columns carried into predictions.parquet when present
MANIFEST_COLUMNS = ("label", "tier", "pool", "confuser_category", "psfsize_r", "psfdepth_r")
#: truth columns carried for strata when present
TRUTH_COLUMNS = ("theta_e", "source_mag")


def _require(table: pa.Table, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UserError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(table.column_names)}")


def _ids_as_string(table: pa.Table) -> pa.Table:
    idx = table.column_names.index("galaxy_id")
    return table.set_column(idx, "galaxy_id", pc.cast(table.column("galaxy_id"), pa.string()))


def build_predictions(scores: pa.Table, manifest: pa.Table, truth: pa.Table | None = None,
                      *, scores_name: str = "train/scores.parquet",
                      manifest_name: str = "data/manifest.parquet") -> pa.Table:
    """One row per scored cutout: galaxy_id, split, label, tier, pool, confuser_category, score, ..."""
    _require(scores, ("galaxy_id", "split", "score"), scores_name)
    _require(manifest, ("galaxy_id", "label"), manifest_name)
    scores = _ids_as_string(scores.select(["galaxy_id", "split", "score"]))
    if pc.count_distinct(scores.column("galaxy_id")).as_py() != scores.num_rows:
        raise UserError(f"{scores_name}: galaxy_id values are not unique; each cutout must be scored once")
    keep = [c for c in MANIFEST_COLUMNS if c in manifest.column_names]
    joined = scores.join(_ids_as_string(manifest.select(["galaxy_id", *keep])), keys="galaxy_id",
                         join_type="left outer")
    n_missing = joined.column("label").null_count
    if n_missing:
        raise UserError(
            f"{n_missing} cutouts in {scores_name} are not in {manifest_name} (e.g. "
            f"{joined.filter(pc.is_null(joined.column('label'))).column('galaxy_id')[0].as_py()!r}); "
            "scores and manifest must come from the same run"
        )
    if truth is not None and "galaxy_id" in truth.column_names:
        extra = [c for c in TRUTH_COLUMNS if c in truth.column_names and c not in joined.column_names]
        if extra:
            joined = joined.join(_ids_as_string(truth.select(["galaxy_id", *extra])), keys="galaxy_id",
                                 join_type="left outer")
    for name in ("tier", "pool", "confuser_category"):
        if name not in joined.column_names:
            joined = joined.append_column(name, pa.nulls(joined.num_rows, pa.string()))
    joined = joined.set_column(joined.column_names.index("label"), "label",
                               pc.cast(joined.column("label"), pa.int8()))
    joined = joined.set_column(joined.column_names.index("score"), "score",
                               pc.cast(joined.column("score"), pa.float64()))
    order = ["galaxy_id", "split", "label", "tier", "pool", "confuser_category", "score"]
    rest = [c for c in joined.column_names if c not in order]
    return joined.select([*order, *rest]).sort_by([("split", "ascending"), ("galaxy_id", "ascending")])
