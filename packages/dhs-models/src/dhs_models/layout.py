"""Files the train stage writes; each name defined once, here (imported by every reader).

Names are relative to the train stage's directory; :data:`ARTIFACTS` gives them relative to
the run directory, as the stage declares them.
"""

#: the train stage's directory inside a run directory
TRAIN_DIR = "train"
#: the checkpoint with the best validation metric (the one scored and deployed)
BEST = "best.pt"
#: the checkpoint after the last finished epoch (resume point)
LAST = "last.pt"
#: per-epoch checkpoints, ``EPOCH.format(epoch=3)`` -> ``epoch_003.pt``
EPOCH = "epoch_{epoch:03d}.pt"
#: one JSON line of metrics per epoch
METRICS = "metrics.jsonl"
#: sigmoid scores of the val and test splits under the best checkpoint
SCORES = "scores.parquet"
#: what the trainer records about the run: stop reason, parameter count, device and precision
SUMMARY = "summary.json"

#: the train stage's named artifacts, relative to the run directory (``Stage.artifacts``)
ARTIFACTS = {
    "best": f"{TRAIN_DIR}/{BEST}",
    "last": f"{TRAIN_DIR}/{LAST}",
    "metrics": f"{TRAIN_DIR}/{METRICS}",
    "scores": f"{TRAIN_DIR}/{SCORES}",
    "summary": f"{TRAIN_DIR}/{SUMMARY}",
}
