"""Metrics to `metrics.jsonl` (one JSON object per logged step) and TensorBoard, in a local or cloud workdir.

TensorBoard event files are TFRecord files of `Event` protos, written here with
the `tensorboard` package's protos and record framing only: its EventFileWriter
imports TensorFlow when it is installed (about 10 s per process, for file I/O
this module does itself). If the package is missing, only the JSONL file is written.

An object store cannot append to an object, so for a URL workdir the records are
appended to a local buffer and `flush` writes the whole `metrics.jsonl` object once
more, and each flush uploads the TensorBoard events since the previous one as a new
numbered event file (TensorBoard reads every event file of a folder in order).
The training loop flushes after every checkpoint and at the end: a preempted run
resumes from its last checkpoint and drops later records anyway, so nothing a
resumed run keeps is lost.
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from typing import Mapping

from absl import logging

from gan_jax import fs

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class _EventFile:
  """One TensorBoard event file: a TFRecord file whose first record names the format version."""

  def __init__(self, folder: str, suffix: str, event_pb2, record_writer):
    os.makedirs(folder, exist_ok=True)
    # TensorBoard's naming: events.out.tfevents.<seconds>.<host>.<pid><suffix>.
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}{suffix}"
    self._file = open(os.path.join(folder, name), "ab")
    self._records = record_writer.RecordWriter(self._file)
    self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def add_event(self, event) -> None:
    self._records.write(event.SerializeToString())

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class _EventWriter:
  """Scalars to TensorBoard event files in `logdir`; remote logdirs get one new file per flush."""

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._event_pb2, self._summary_pb2, self._record_writer = event_pb2, summary_pb2, record_writer
    self.logdir = logdir
    self._local_dir = logdir if fs.is_local(logdir) else tempfile.mkdtemp(prefix="gan_jax_tensorboard_")
    self._chunk = 0
    self._writer = self._open()

  def _open(self):
    self._chunk += 1
    # Names sort by time: a new chunk's events come after the previous chunk's.
    return _EventFile(self._local_dir, f".{self._chunk:06d}", self._event_pb2, self._record_writer)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    values = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._writer.add_event(self._event_pb2.Event(step=step, wall_time=time.time(),
                                                 summary=self._summary_pb2.Summary(value=values)))

  def flush(self, reopen: bool = True) -> None:
    if fs.is_local(self.logdir):
      self._writer.flush()
      return
    self._writer.close()
    for name in os.listdir(self._local_dir):
      fs.write_bytes(fs.join(self.logdir, name), fs.read_bytes(os.path.join(self._local_dir, name)))
      os.remove(os.path.join(self._local_dir, name))
    if reopen:
      self._writer = self._open()

  def close(self) -> None:
    if fs.is_local(self.logdir):
      self._writer.close()
    else:
      self.flush(reopen=False)
      os.rmdir(self._local_dir)


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
    workdir: run folder (local or a URL).
    resume_step: step of the restored checkpoint (0 for a fresh run).
    enabled: False on non-zero processes of a multi-process run (they write nothing).
  """

  def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    self._path = fs.join(workdir, METRICS_FILE)
    self._local = fs.is_local(workdir)
    self._tb = None
    self._records: list[str] = []
    if not enabled:
      return
    self._records = [json.dumps(r) for r in read_metrics(workdir) if r["step"] <= resume_step]
    fs.write_lines(self._path, self._records)
    try:
      self._tb = _EventWriter(fs.join(workdir, TENSORBOARD_DIR))
    except ImportError:
      logging.warning("tensorboard is not installed: writing metrics.jsonl only.")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step)}
    record.update({k: _to_json_number(v) for k, v in scalars.items()})
    line = json.dumps(record)
    self._records.append(line)
    if self._local:
      with open(self._path, "a") as f:
        f.write(line + "\n")
    if self._tb is not None:
      self._tb.write(step, {k: v for k, v in record.items() if k != "step" and v is not None})

  def flush(self) -> None:
    """Makes everything written so far visible in the workdir (uploads it for a URL workdir)."""
    if not self.enabled:
      return
    if not self._local:
      fs.write_lines(self._path, self._records)
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self.enabled and not self._local:
      fs.write_lines(self._path, self._records)
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def _to_json_number(value) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None
