"""TensorBoard tracker: event files written with tensorboard's own writer (no TensorFlow, no torch).

Per epoch every numeric metric becomes a scalar (tag ``epoch/<name>``, step = the epoch); at the
end of the run the headline results become scalars (tag ``results/<stage>.<metric>``) and the ROC
and completeness PNGs images. Needs ``pip install 'dhs-eval[tensorboard]'``.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

from dhs_eval.trackers.config import TensorBoardConfig


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


class TensorBoardTracker:
    def __init__(self, run: Any, config: TensorBoardConfig) -> None:
        self.run, self.config = run, config
        self.log_dir = Path(run.run_dir) / config.log_dir
        self.writer: Any = None
        self.last_epoch = 0

    def start(self) -> None:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as exc:
            raise ImportError("[trackers.tensorboard] needs tensorboard: pip install 'dhs-eval[tensorboard]'") from exc
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(self.log_dir))

    def _write(self, step: int, values: list[Any]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        self.writer.add_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))

    def _scalars(self, step: int, metrics: dict[str, Any], prefix: str) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=f"{prefix}/{k}", simple_value=float(v)) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if values:
            self._write(step, values)

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.writer is None:
            return
        self.last_epoch = epoch
        self._scalars(epoch, metrics, "epoch")
        self.writer.flush()

    def finish(self, results: dict[str, Any]) -> None:
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        from dhs_eval.trackers import figures

        self._scalars(self.last_epoch, results, "results")
        for tag, path in figures(Path(self.run.run_dir)):
            data = path.read_bytes()
            width, height = _png_size(data)
            image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data)
            self._write(self.last_epoch, [Summary.Value(tag=tag, image=image)])
        self.writer.flush()
        self.writer.close()
        self.writer = None
