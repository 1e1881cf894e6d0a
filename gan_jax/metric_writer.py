"""Metrics to `metrics.jsonl` (one JSON object per logged step) and TensorBoard.

TensorBoard event files are written with the `tensorboard` package's pure-Python
writer, so logging works on machines without TensorFlow; if the package is
missing, only the JSONL file is written.
"""
from __future__ import annotations

import json
import math
from typing import Mapping

from absl import logging

from gan_jax import fs

METRICS_FILE = "metrics.jsonl"


def _tensorboard_writer(logdir: str):
  try:
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer.event_file_writer import EventFileWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("tensorboard is not installed: writing metrics.jsonl only.")
    return None
  writer = EventFileWriter(logdir)

  def write(step: int, scalars: Mapping[str, float]) -> None:
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    writer.add_event(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))

  return write, writer


def read_metrics(workdir: str) -> list[dict]:
  """All records of `workdir/metrics.jsonl` (empty if the file does not exist)."""
  path = fs.join(workdir, METRICS_FILE)
  if not fs.exists(path):
    return []
  return [json.loads(line) for line in fs.read_text(path).splitlines() if line.strip()]


class MetricWriter:
  """Appends metrics records; on resume drops records past the restored step.

  A run killed after logging step 120 but checkpointing step 100 re-runs steps
  101-120 on resume; dropping the stale records keeps one record per step.

  Args:
    workdir: run folder.
    resume_step: step of the restored checkpoint (0 for a fresh run).
    enabled: False on non-zero processes of a multi-process run (they write nothing).
  """

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    self._path = fs.join(workdir, METRICS_FILE)
    self._tb = None
    if not enabled:
      return
    kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
    fs.write_lines(self._path, [json.dumps(r) for r in kept])
    self._tb = _tensorboard_writer(fs.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step)}
    record.update({k: _to_json_number(v) for k, v in scalars.items()})
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      self._tb[0](step, {k: v for k, v in record.items() if k != "step" and v is not None})

  def close(self) -> None:
    if self._tb is not None:
      self._tb[1].close()
      self._tb = None


def _to_json_number(value) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None
