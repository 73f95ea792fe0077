"""MODEL_CARD.md in the published template and report.html, on fixture runs (fast)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
from fixture_plugin import fixture_stages

import dhs_core
from dhs_core.errors import UserError

FULL = {"fixture_data": {}, "fixture_train": {}, "fixture_selection": {},
        "evaluate": [{"name": "classification", "n_bootstrap": 50}]}

#: the template's sections (docs/eval.md, "Model card") and, per section, fields that must appear
TEMPLATE = {
    "## Identification": ("| Run ID |", "| Config |", "| Checkpoint |", "| Status |"),
    "## Evaluation metrics": ("| ROC AUC [95 % bootstrap CI] |", "| Tier-A recall @0.5 |", "| Tier-A recall @0.3 |",
                              "| Tier-A AUC (vs all negatives) |", "| ECE / MCE |", "| FPR by N2 confuser category @0.5 |",
                              "| Shortcut gates (core-only AUC) |"),
    "## Artifacts": ("| ./ |",),
    "## Steps to reproduce": ("```sh", "dhs run"),
    "## Verification checklist": ("| Artifact paths exist |", "| Config = what ran |", "| Counts match the manifest |",
                                  "| Copy-pastable command and cwd |", "| Every field filled or \"Not run\" |"),
}


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    with fixture_stages():
        result = dhs_core.run({"run": {"name": "reporttest", "seed": 7, "out_dir": str(tmp / "run")}, **FULL})
    return result.run_dir


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def test_card_has_every_template_section_and_field_and_no_blank_cell(fixture_run):
    card = (fixture_run / "MODEL_CARD.md").read_text()
    for heading, fields in TEMPLATE.items():
        assert heading in card
        part = card[card.index(heading):]
        for field in fields:
            assert field in part, (heading, field)
    for line in card.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line):
            assert all(_cells(line)), line
    # the checklist is computed: on a complete fixture run every item passes
    checks = card[card.index("## Verification checklist"):].splitlines()[4:]
    assert checks and all("| pass:" in c for c in checks), checks
    # Tier-A recall is checked against the predictions, independently of the card code
    import numpy as np
    import pyarrow.parquet as pq

    p = pq.read_table(fixture_run / "evaluate/predictions.parquet").to_pydict()
    sel = [(s, t) for s, t, sp, lab in zip(p["score"], p["tier"], p["split"], p["label"])
           if sp == "test" and lab == 1 and t == "A" and np.isfinite(s)]
    k = sum(s > 0.5 for s, _ in sel)
    assert f"| Tier-A recall @0.5 | {k / len(sel):.4f} ({k}/{len(sel)}) [" in card


def test_long_material_goes_to_linked_csvs(fixture_run):
    import csv

    card = (fixture_run / "MODEL_CARD.md").read_text()
    strata = list(csv.DictReader((fixture_run / "report/strata.csv").open()))
    metrics = json.loads((fixture_run / "evaluate/metrics.json").read_text())
    test = metrics["evaluators"]["classification"]["splits"]["test"]["strata"]
    n_expected = sum(len(v) if isinstance(v, list) else len(v["recall"]) + len(v["fpr"])
                     for split in metrics["evaluators"]["classification"]["splits"].values()
                     for v in split["strata"].values())
    assert len(strata) == n_expected and "[report/strata.csv](report/strata.csv)" in card
    # PSF strata are in the CSV, not in the card
    assert any(r["group"] == "by_psfsize_r" for r in strata) and "psfsize_r [" not in card
    assert "not defined (0/0" not in card  # empty strata are summarised, not listed
    cells = list(csv.DictReader((fixture_run / "report/selection_cells.csv").open()))
    assert len(cells) == 12 and {"n_detected", "n_ok", "completeness_low_68"} <= set(cells[0])
    assert test  # the fixture has strata at all


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.scripts, self.tables, self.links = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script":
            self.scripts.append(a.get("src"))
        if tag == "table" and "sortable" in (a.get("class") or ""):
            self.tables += 1
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])


def test_report_html_is_self_contained(fixture_run):
    page = (fixture_run / "report.html").read_text()
    parsed = _Page()
    parsed.feed(page)
    assert not re.search(r"https?://", page)
    assert all(src is None for src in parsed.scripts)  # inline script only
    assert len(parsed.imgs) >= 4
    for src in parsed.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parsed.tables >= 5
    assert "## " not in page and "<h2" in page


def test_dhs_report_on_a_directory_that_is_not_a_run(tmp_path):
    from dhs_eval.report import write_report

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError) as info:
        write_report(tmp_path)
    assert info.value.exit_code == 2 and "is not a run directory" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no such directory"):
        write_report(tmp_path / "missing")


def test_interrupted_run_and_corrupt_metrics_still_render(fixture_run, tmp_path):
    from dhs_eval.report import write_report

    run = tmp_path / "copy"
    shutil.copytree(fixture_run, run)
    shutil.rmtree(run / "selection_function")
    (run / "evaluate/metrics.json").write_text('{"evaluators": {"classification": ')  # truncated
    info = json.loads((run / "run_info.json").read_text())
    info["status"] = "interrupted"
    (run / "run_info.json").write_text(json.dumps(info))
    with fixture_stages():
        html = write_report(run)
    card = (run / "MODEL_CARD.md").read_text()
    ev = card[card.index("## Evaluation metrics"):]
    assert ev.splitlines()[2].startswith("unreadable: JSONDecodeError")
    assert "## Data (fixture)" in card and "## Training run (fixture)" in card  # the rest rendered
    assert "Status | interrupted" in card
    assert "cells.parquet (Not run)" in card
    page = html.read_text()
    assert "unreadable: JSONDecodeError" in page and "Not run" in page


def test_asinh_colour_keeps_band_colours():
    import numpy as np

    from dhs_eval.report import asinh_rgb

    stamp = np.random.default_rng(0).normal(0, 0.01, (3, 16, 16))  # sky noise
    stamp[0, 2, 2] = 50.0  # g only: blue, a bright core
    stamp[2, 9, 9] = 0.2  # z only, 20 sigma but 250x fainter than the core: still red, visible
    rgb = asinh_rgb(stamp)
    assert rgb.shape == (16, 16, 3) and rgb.min() >= 0 and rgb.max() == 1.0
    assert rgb[2, 2].argmax() == 2 and rgb[9, 9].argmax() == 0
    # a linear scale would put the faint pixel at 0.2 / (50 * 2.5 / 1.0) ~ 0.002 of the peak
    assert rgb[9, 9, 0] > 0.1


def test_other_evaluators_card_tables_notes_and_figures(tmp_path):
    """An evaluator's own "card" tables replace its headline list; notes and figures follow."""
    from dhs_core.io import write_json
    from dhs_eval.card import section
    from dhs_eval.layout import EVALUATE_ARTIFACTS

    comp = {"name": "x", "distribution": "dhs-test", "version": "1.0"}
    write_json(tmp_path / EVALUATE_ARTIFACTS["metrics"], {"evaluators": {
        "with_table": {"component": comp, "headline": {"hidden": 1.0}, "figures": ["with_table.png"],
                       "card": {"tables": [{"title": "Recall by bin", "columns": ["bin", "recall", "k/n"],
                                            "rows": [["23-24", 0.123456, "5/40"], ["24-25", None, "0/0"]]}],
                                "notes": ["Rule: a ceiling >= 0.4 means geometry."]}},
        "plain": {"component": comp, "headline": {"auc": 0.9}},
    }})
    text = section(tmp_path)
    block = text[text.index("### with_table"):]  # sections follow metrics.json's (sorted) key order
    assert "**Recall by bin**" in block and "| bin | recall | k/n |" in block
    assert "| 23-24 | 0.1235 | 5/40 |" in block and "| 24-25 | — | 0/0 |" in block
    assert "hidden" not in block and "Rule: a ceiling >= 0.4 means geometry." in block
    assert "[with_table.png](evaluate/with_table.png)" in block
    assert "| auc | 0.9000 |" in text[text.index("### plain"):text.index("### with_table")]
