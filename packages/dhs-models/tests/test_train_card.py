"""The train stage's MODEL_CARD.md section, from hand-written metrics.jsonl and run_info.json."""

from __future__ import annotations

import json

from dhs_models.card import section
from dhs_models.stage import TrainStage


def _run_dir(tmp_path, epochs_planned):
    (tmp_path / "train").mkdir(parents=True)
    rows = [{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "val_auc": 0.81, "best": True},
            {"epoch": 2, "train_loss": 0.4, "val_loss": 0.45, "val_auc": 0.85, "best": True},
            {"epoch": 3, "train_loss": 0.3, "val_loss": 0.47, "val_auc": 0.84, "best": False}]
    (tmp_path / "train" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    info = {"spec": {"model": {"name": "bottlenecked_resnet", "base_ch": 4}, "train": {"epochs": epochs_planned}},
            "stages": {"train": {"started": "2024-01-01T00:00:00", "finished": "2024-01-01T00:05:00",
                                 "seconds": 300.0}}}
    (tmp_path / "run_info.json").write_text(json.dumps(info))
    return tmp_path


def test_train_section_shows_architecture_run_and_selected_epoch(tmp_path):
    run_dir = _run_dir(tmp_path, 5)
    text = section(run_dir)
    assert text.startswith("## Architecture and hyperparameters\n")
    assert "**[model]**" in text and "- `base_ch` = `4`" in text and "**[preprocess]**\n\n- not set" in text
    assert "- Train stage: started 2024-01-01T00:00:00, finished 2024-01-01T00:05:00 (300.0 s)" in text
    assert "- Epochs: 3; stop reason: stopped after 3 of 5 configured epochs (early stopping" in text
    assert "training curves" not in text  # the report stage has not drawn them
    # the last epoch flagged best is the selected one
    assert "best epoch 2" in text and "- val_auc: 0.8500" in text and "- val_loss: 0.4500" in text
    assert "train_loss" not in text.split("## Validation metrics")[1]
    (run_dir / "report").mkdir()
    (run_dir / "report" / "training_curves.png").write_bytes(b"png")
    assert "![training curves](report/training_curves.png)" in TrainStage().card_section(run_dir)


def test_train_section_completed_and_not_run(tmp_path):
    assert "stop reason: completed the configured 3 epochs" in section(_run_dir(tmp_path / "a", 3))
    text = section(tmp_path / "empty")
    assert "## Training run\n\nNot run (no train/metrics.jsonl)." in text
    assert "## Validation metrics\n\nNot run (no train/metrics.jsonl)." in text
