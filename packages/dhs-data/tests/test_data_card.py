"""The data stage's MODEL_CARD.md section, from a hand-made data directory with known counts."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from dhs_data.card import section
from dhs_data.stage import DataStage


def test_data_section_counts_splits_tiers_and_pools(tmp_path):
    (tmp_path / "data").mkdir()
    #            train: 2 pos, 4 neg        test: 1 pos, 2 neg
    split = ["train"] * 6 + ["test"] * 3
    label = [1, 1, 0, 0, 0, 0, 1, 0, 0]
    tier = ["A", "B", None, None, None, None, None, None, None]
    pool = [None, None, "N1", "N1", "N1", "N2", None, "N1", "N2"]
    pq.write_table(pa.table({"split": split, "label": pa.array(label, pa.int8()),
                             "tier": pa.array(tier, pa.string()), "pool": pa.array(pool, pa.string())}),
                   tmp_path / "data" / "manifest.parquet")
    (tmp_path / "data" / "data_report.json").write_text(json.dumps({"n_rows": 9, "n_excluded": 2,
                                                                    "excluded_paths": ["x"]}))
    split_cfg = {"method": "healpix", "nside": 128}
    (tmp_path / "run_info.json").write_text(json.dumps({"spec": {"data": {"name": "manifest", "split": split_cfg}}}))
    text = section(tmp_path)
    assert text.startswith("## Data\n")
    assert "| test | 1 | 2 | 2.0:1 |" in text and "| train | 2 | 4 | 2.0:1 |" in text
    assert "| all | 3 | 6 | 2.0:1 |" in text
    assert "- Positives per tier: A: 1, B: 1, none: 1" in text
    assert "- Negatives per pool: N1: 4, N2: 2 (N1:N2 = 2.00)" in text
    assert f"- Split method: `{json.dumps(split_cfg)}`" in text
    assert "  - `n_excluded` = `2`" in text and "excluded_paths" not in text  # lists are left out
    assert DataStage().card_section(tmp_path) == text


def test_data_section_without_a_manifest_says_not_run(tmp_path):
    assert section(tmp_path) == "## Data\n\nNot run (no data/manifest.parquet)."
