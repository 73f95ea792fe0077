"""`dhs compare` and `dhs report` through the command line on two real tiny runs."""

from __future__ import annotations

import json
import re
import shutil

from conftest import dhs


def test_compare_two_seeds_prints_delong_and_intervals(tiny_runs):
    proc = dhs(tiny_runs["dir"], "compare", "run_a", "run_b", "--out", "cmp")
    out = proc.stdout
    row = next(line for line in out.splitlines() if line.startswith("| run_a vs run_b |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "omitted" not in row and 0.0 <= float(cells[5]) <= 1.0  # a p-value
    # the AUCs in the DeLong row are those each run's evaluation recorded
    for cell, run in zip(cells[2:4], ("a", "b")):
        m = json.loads((tiny_runs[run] / "evaluate/metrics.json").read_text())
        assert float(cell) == round(m["evaluators"]["classification"]["splits"]["test"]["auc"], 4)
    auc_row = next(line for line in out.splitlines() if line.startswith("| test ROC AUC [95 % CI] |"))
    per_run = [c.strip() for c in auc_row.strip("|").split("|")[1:]]
    assert len(per_run) == 2 and all(re.fullmatch(r"[0-9.]+ \[[0-9.]+, [0-9.]+\]", c) for c in per_run), per_run
    assert (tiny_runs["dir"] / "cmp/compare.html").is_file() and (tiny_runs["dir"] / "cmp/compare.md").is_file()
    assert (tiny_runs["dir"] / "cmp/compare_completeness_theta_e.png").stat().st_size > 1000


def test_quickstart_shaped_card_is_short_and_complete(tiny_runs):
    card = (tiny_runs["a"] / "MODEL_CARD.md").read_text()
    assert len(card.splitlines()) < 150
    for field in ("| Run ID |", "| Checkpoint |", "| Parameters |", "| Stop reason | completed the configured 2 epochs |",
                  "| Best val AUC |", "| Tier-A recall @0.5 |", "| ECE / MCE |", "| Pooled posterior median",
                  "| Config = what ran | pass", "| Counts match the manifest | pass", "| Artifact paths exist | pass"):
        assert field in card, field
    summary = json.loads((tiny_runs["a"] / "train/summary.json").read_text())
    import torch

    state = torch.load(tiny_runs["a"] / "train/best.pt", weights_only=True)["model"]
    assert summary["n_parameters"] == sum(v.numel() for k, v in state.items() if "running" not in k
                                          and "num_batches" not in k)
    assert f"| Parameters | {summary['n_parameters']:,} |" in card


def test_dhs_report_bad_input_and_regeneration(tiny_runs, tmp_path):
    proc = dhs(tmp_path, "report", str(tmp_path), check=False)
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr and "Traceback" not in proc.stderr
    run = tmp_path / "copy"
    shutil.copytree(tiny_runs["a"], run)
    (run / "evaluate/metrics.json").write_text("{not json")
    (run / "MODEL_CARD.md").unlink()
    dhs(tmp_path, "report", str(run))
    card = (run / "MODEL_CARD.md").read_text()
    assert "unreadable: JSONDecodeError" in card and "## Selection function" in card
    assert "| Parameters |" in card and (run / "report.html").is_file()
