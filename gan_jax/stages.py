"""The stage runner of the multi-stage protocols (imbalance benchmark, anomaly detection, SinGAN scales).

A protocol is a list of `Stage`s built once, so the plan (and the ETA it
weighs) cannot disagree with what runs. A stage is done when its *marker*
file exists (and, for a JSON marker with a fingerprint, records that
fingerprint); the runner writes the marker atomically, from the payload the
stage returns, only after the stage finished. A rerun therefore skips finished
stages and redoes an interrupted one (which itself may resume from checkpoints).
SIGTERM/SIGINT stop the run between stages; a stage that stops inside (a
checkpointed training run) raises `StageStopped`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import flax.serialization
import jax
from absl import logging

from gan_jax import fs
from gan_jax import preemption
from gan_jax import progress


class StageStopped(RuntimeError):
  """A signal stopped a stage after it saved its progress; rerun the same command to resume."""


@dataclasses.dataclass(frozen=True)
class Stage:
  """One step of a protocol.

  Attributes:
    name: shown in the progress lines.
    marker: the file that records the finished stage; its suffix says how the
      payload is stored: .json (a dict), .msgpack (a pytree of arrays), .npz (a
      dict of arrays).
    run: computes the stage (it may write side files first) and returns the payload.
    work: expected work (e.g. training steps), weighting the ETA among stages of its kind;
      None: unknown in advance (drawing filtered samples), estimated from finished stages of its kind.
    fingerprint: what the result depends on (JSON markers only): a marker that
      records another one is stale, and the stage is redone.
    folder: what the stage owns; removed before redoing a stale stage.
    resume: called instead of `run` for a finished stage whose in-memory result later
      stages need (a SinGAN scale restores its networks); None: nothing to do.
    cleanup: removes what the stage kept only to resume itself (per-class parts of a
      draw); called once its marker is written, and for a finished stage on a rerun (a
      process may die between the two). None: nothing to remove.
    kind: stages of one kind share an ETA rate; '' (default): the first word of the name
      ('generator', 'classifier'). Stages whose names share a word but whose work units
      differ name their own kind.
  """
  name: str
  marker: str
  run: Callable[[], Any]
  work: float | None = 1.0
  fingerprint: dict | None = None
  folder: str | None = None
  resume: Callable[[], Any] | None = None
  cleanup: Callable[[], None] | None = None
  kind: str = ""

  def __post_init__(self):
    if not self.kind:
      object.__setattr__(self, "kind", self.name.split(" ", 1)[0])


class _Eta:
  """The time the stages still to run will take, from the stages this process computed.

  Each kind of stage has its own rate (seconds per unit of work): a generator's steps, a
  classifier's steps and a sampling stage cost different wall time per unit. A kind not seen
  yet takes the rate of all weighed stages so far; a stage of unknown work takes the mean time of
  its kind. Stages that nothing estimates are counted, not guessed.
  """

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self.work: dict[str, float] = {}
    self.count: dict[str, int] = {}

  def add(self, stage: Stage, seconds: float) -> None:
    kind = stage.kind
    self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
    self.count[kind] = self.count.get(kind, 0) + 1
    if stage.work:
      self.work[kind] = self.work.get(kind, 0.0) + stage.work

  def _rate(self, kind: str) -> float | None:
    if self.work.get(kind):
      return self.seconds[kind] / self.work[kind]
    weighed = sum(self.work.values())
    return sum(self.seconds[k] for k in self.work) / weighed if weighed else None

  def remaining(self, stages: Sequence[Stage]) -> tuple[float, int]:
    """(estimated seconds, stages left out of the estimate) of `stages`."""
    total, unknown = 0.0, 0
    for stage in stages:
      if stage.work is None:
        if stage.kind in self.count:
          total += self.seconds[stage.kind] / self.count[stage.kind]
        else:
          unknown += 1
        continue
      rate = self._rate(stage.kind)
      if rate is None:
        unknown += 1
      else:
        total += stage.work * rate
    return total, unknown


def save_payload(path: str, payload: Any) -> None:
  """Writes a stage payload atomically in the format its suffix names."""
  if path.endswith(".json"):
    fs.write_json(path, payload)
  elif path.endswith(".msgpack"):
    fs.write_bytes(path, flax.serialization.to_bytes(jax.device_get(payload)))
  elif path.endswith(".npz"):
    fs.save_npz(path, **payload)
  else:
    raise ValueError(f"Stage marker {path} must end in .json, .msgpack or .npz")


def load_payload(path: str, template: Any = None) -> Any:
  """Reads what `save_payload` wrote (.msgpack needs the pytree `template`)."""
  if path.endswith(".json"):
    return fs.read_json(path)
  if path.endswith(".msgpack"):
    return flax.serialization.from_bytes(jax.device_get(template), fs.read_bytes(path))
  if path.endswith(".npz"):
    return fs.load_npz(path)
  raise ValueError(f"Stage marker {path} must end in .json, .msgpack or .npz")


def is_done(stage: Stage) -> bool:
  if not fs.exists(stage.marker):
    return False
  if stage.fingerprint is None:
    return True
  return fs.read_json(stage.marker).get("fingerprint") == stage.fingerprint


class Runner:
  """Runs stages in order, skipping finished ones, with one progress line per stage and an ETA.

  The ETA weighs the remaining stages by their `work`, at the rate each kind of
  stage ran at in this process (see `_Eta`); cached stages do not count.

  Args:
    stages: the whole plan; names must be unique.
    writer: whether this process writes markers (process 0 of a multi-process run).
  """

  def __init__(self, stages: Sequence[Stage], writer: bool = True):
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
      raise ValueError(f"stage names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    self.stages = list(stages)
    self.writer = writer
    self.computed: list[str] = []
    self.cached: list[str] = []
    self.seconds: dict[str, float] = {}  # wall time of each stage computed by this process

  def run(self, stop: preemption.StopSignal | None = None) -> bool:
    """Runs every stage not yet done; False when a signal stopped the run (rerun to resume)."""
    total, eta = len(self.stages), _Eta()
    done = [is_done(s) for s in self.stages]
    for index, stage in enumerate(self.stages, start=1):
      if done[index - 1]:
        self.cached.append(stage.name)
        logging.info("[stage %d/%d] %s: cached", index, total, stage.name)
        if stage.resume is not None:
          stage.resume()
        if stage.cleanup is not None and self.writer:
          stage.cleanup()
        continue
      if stage.folder is not None and fs.exists(stage.marker) and self.writer:
        fs.remove(stage.folder)  # a result of another fingerprint: its checkpoints are stale too
      start = time.perf_counter()
      try:
        payload = stage.run()
      except StageStopped as e:
        logging.warning("%s; rerun the same command to resume.", e)
        return False
      if self.writer:
        save_payload(stage.marker, _with_fingerprint(payload, stage))
        if stage.cleanup is not None:
          stage.cleanup()
      took = time.perf_counter() - start
      self.seconds[stage.name] = took
      eta.add(stage, took)
      self.computed.append(stage.name)
      seconds_left, unknown = eta.remaining([s for s, d in zip(self.stages[index:], done[index:]) if not d])
      eta_text = progress.format_duration(seconds_left) if not unknown else (
          f"{progress.format_duration(seconds_left)} + {unknown} stage{'s' * (unknown > 1)} not yet estimable")
      logging.info("[stage %d/%d] %s: done in %s | ETA %s", index, total, stage.name, progress.format_duration(took),
                   eta_text)
      if index < total and stop is not None and stop.should_stop():
        logging.warning("Stopped by %s between stages; rerun the same command to resume.",
                        stop.received or "a signal on another process")
        return False
    return True


def _with_fingerprint(payload: Any, stage: Stage) -> Any:
  if stage.fingerprint is None:
    return payload
  return {**payload, "fingerprint": stage.fingerprint}
