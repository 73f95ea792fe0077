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
    assert "| Train / val / test (positives, negatives) | 6 (2, 4) / 0 (0, 0) / 3 (1, 2) |" in text
    assert "| Positives / negatives (neg:pos) | 3 / 6 (2.0:1) |" in text
    # Tier-A counts in the test split (evaluation), Tier-B in the training split
    assert "| Tier-A (eval, test split) | 0 |" in text and "| Tier-B (training split) | 1 |" in text
    assert "| N1:N2 | 4:2 (2.00) |" in text
    assert "| Split method and seed | method=healpix, nside=128 |" in text
    assert "| Excluded cutouts | 2 (missing, unreadable or non-finite" in text and "excluded_paths" not in text
    assert "| Dataset mode | manifest |" in text
    assert DataStage().card_section(tmp_path) == text


def test_data_section_without_a_manifest_says_not_run(tmp_path):
    assert section(tmp_path) == "## Data\n\nNot run (no data/manifest.parquet)."
