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

#: the score stage's directory inside a run directory (``dhs score --run`` writes there too)
SCORE_DIR = "score"
#: what a scoring directory scores with: checkpoint SHA-256, data, shard size (written first)
SCORE_INFO = "score.json"
#: per-shard score files, ``SCORE_SHARD.format(index=3)`` -> ``shards/shard_000003.parquet``
SCORE_SHARD = "shards/shard_{index:06d}.parquet"
#: every cutout's score (null when not scored) and status, in manifest order
SCORE_TABLE = "scores.parquet"
#: counts by status, throughput, device, checkpoint digest, quantiles, FPR thresholds
SCORE_SUMMARY = "summary.json"
#: the top-K cutouts by score
CANDIDATES = "candidates.parquet"

#: the score stage's named artifacts, relative to the run directory
SCORE_ARTIFACTS = {
    "scores": f"{SCORE_DIR}/{SCORE_TABLE}",
    "summary": f"{SCORE_DIR}/{SCORE_SUMMARY}",
    "candidates": f"{SCORE_DIR}/{CANDIDATES}",
}
