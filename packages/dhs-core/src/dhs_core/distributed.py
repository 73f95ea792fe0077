"""Which process of a multi-process launch this is, read from the environment ``torchrun`` sets.

``dhs run`` under ``torchrun --nproc-per-node N`` starts N copies of the same command. Rank 0 is
the run: it takes the run-directory lock, runs every stage and writes every artifact, state file
and log line. Other ranks take part only in stages marked ``distributed`` (training with
DistributedDataParallel) and write nothing. dhs-core stays torch-free: it only reads the
variables here; joining the process group and its barriers belong to the stage that needs them.
"""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default  # a launcher that sets these sets integers; anything else is not one


def rank() -> int:
    """Global rank (``RANK``); 0 when not launched by torchrun."""
    return _env_int("RANK", 0)


def world_size() -> int:
    """Number of processes in the launch (``WORLD_SIZE``); 1 when not launched by torchrun."""
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """Rank on this node (``LOCAL_RANK``), which picks the GPU; falls back to the global rank."""
    return _env_int("LOCAL_RANK", rank())


def is_distributed() -> bool:
    """True in a multi-process launch."""
    return world_size() > 1


def is_main() -> bool:
    """True for the process that writes the run's artifacts (rank 0, or the only process)."""
    return rank() == 0
