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
    assert "| Architecture | bottlenecked_resnet, base_ch=4 |" in text and "| Max epochs | 5 |" in text
    assert "| Start / end (UTC) | 2024-01-01T00:00:00 → 2024-01-01T00:05:00 (300.0 s) |" in text
    assert "| Epochs done | 3 of 5 |" in text
    # no train/summary.json: the stop reason is not guessed from the epoch count
    assert "| Stop reason | not recorded (no train/summary.json" in text and "| Parameters | Not run |" in text
    assert "| Training curves | not drawn yet" in text  # the report stage has not drawn them
    # the last epoch flagged best is the selected one
    assert "| Best epoch | 2 |" in text and "| Best val AUC | 0.8500 |" in text
    assert "| Final train loss | 0.3000 |" in text
    (run_dir / "report").mkdir()
    (run_dir / "report" / "training_curves.png").write_bytes(b"png")
    assert "[report/training_curves.png](report/training_curves.png)" in TrainStage().card_section(run_dir)


def test_train_section_reads_what_the_trainer_recorded(tmp_path):
    run_dir = _run_dir(tmp_path, 5)
    (run_dir / "train" / "summary.json").write_text(json.dumps(
        {"stop_reason": "early stopping: val_auc did not improve by more than 0 for 1 epochs (after epoch 3 of 5)",
         "epochs_configured": 5, "n_parameters": 194340, "amp": "bf16", "device": "cuda:0"}))
    text = section(run_dir)
    assert "| Stop reason | early stopping: val_auc did not improve" in text
    assert "| Parameters | 194,340 |" in text and "| AMP | bf16 |" in text


def test_train_section_not_run(tmp_path):
    text = section(tmp_path / "empty")
    assert "## Training run\n\nNot run (no train/metrics.jsonl)." in text
    assert "## Validation metrics\n\nNot run (no train/metrics.jsonl)." in text
