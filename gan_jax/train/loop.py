"""The one training-loop skeleton behind every model family: GANs, autoencoders, classifiers, SinGAN scales.

restore -> metrics writer -> progress -> SIGTERM -> periodic log / actions /
checkpoints -> non-finite policy -> finally close, in one place. A family
supplies its pure step and, through small hooks, what it logs and how it
judges its own health; batches come from a pure function of the step, so a
restored run replays exactly what an uninterrupted one would have computed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
from absl import logging

from gan_jax import checkpoint
from gan_jax import metric_writer
from gan_jax import preemption
from gan_jax import progress

# (state, step) -> (state, device metrics): one call advances `chunk` steps from `step`.
StepFn = Callable[[Any, int], tuple[Any, dict]]
# (state, host scalars or None before a save, step) -> (extra scalars, a problem or None).
CheckFn = Callable[[Any, dict | None, int], tuple[dict, str | None]]


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN/Inf and the run's policy is to stop (the last good checkpoint is named)."""


@dataclasses.dataclass(frozen=True)
class Periodic:
  """`action(state, step)` every `every` steps and after the last one, on the writing process only."""
  every: int
  action: Callable[[Any, int], None]


@dataclasses.dataclass
class LoopResult:
  """What `train` returns.

  Attributes:
    state: the state after the last step run (the restored one if nothing was left to run).
    last_record: the last logged record, {'step': ..., scalars...} ({} when none exists).
    start: the step training started (or resumed) from.
    stopped_by: the signal that stopped the run early, else None.
    stopped_at: the step it stopped (and checkpointed) at.
  """
  state: Any
  last_record: dict
  start: int
  stopped_by: str | None = None
  stopped_at: int | None = None

  @property
  def stopped(self) -> bool:
    return self.stopped_by is not None


def _due(done: int, every: int, is_last: bool, chunk: int = 1) -> bool:
  """Whether a periodic event falls in the call that ended at `done` (or it is the last call)."""
  return is_last or (every > 0 and (done // every) > ((done - chunk) // every))


def train(state: Any, step_fn: StepFn, *, num_steps: int, name: str, log_every: int = 0, chunk: int = 1,
          checkpoint_dir: str | None = None, checkpoint_every: int = 0, keep_checkpoints: int = 3,
          async_checkpoints: bool = True, metrics_dir: str | None = None, images_per_step: float = 0.0,
          describe: Callable[[dict], str] | None = None, check: CheckFn | None = None, nonfinite_hint: str = "",
          periodic: Sequence[Periodic] = (), one_in_flight: bool = False,
          is_writer: bool | None = None) -> LoopResult:
  """Trains (or resumes from `checkpoint_dir`) until `num_steps`.

  Args:
    state: the freshly initialised state; replaced by the latest readable checkpoint if any.
    step_fn: pure step, called as `step_fn(state, step)` for step = start, start + chunk, ...
    num_steps: total steps of the run.
    name: label of the progress lines.
    log_every: log (metrics.jsonl, TensorBoard, progress line) every this many steps and at the
      last one; 0 logs the last step only.
    chunk: steps one call runs (the last call may run fewer; the step function knows num_steps).
    checkpoint_dir: Orbax folder; None trains without checkpoints (nothing is resumed either).
    checkpoint_every: periodic checkpoints; 0 saves only after the last step and on a signal.
    keep_checkpoints: checkpoints kept.
    async_checkpoints: save in a background thread.
    metrics_dir: folder of metrics.jsonl and tensorboard/ (None: no files, progress lines only).
    images_per_step: for the images_per_sec figure (0: not logged).
    describe: scalars -> the text of the progress line.
    check: the family's health check, called at every log and before every save; a
      problem it names stops the run with NonFiniteError.
    nonfinite_hint: what the NonFiniteError message suggests doing.
    periodic: other actions (sample grids) every so many steps.
    one_in_flight: wait for each step before dispatching the next (keeps XLA:CPU's collective
      rendezvous from starving under many fake devices).
    is_writer: whether this process writes metrics and runs `periodic` (default: process 0).

  Returns:
    A `LoopResult`.

  Raises:
    NonFiniteError: `check` found a problem.
  """
  is_writer = jax.process_index() == 0 if is_writer is None else is_writer
  ckpt = None
  start = 0
  if checkpoint_dir is not None:
    ckpt = checkpoint.Checkpointer(checkpoint_dir, max_to_keep=keep_checkpoints, async_save=async_checkpoints)
    state, restored = ckpt.restore_or(state)
    start = int(restored or 0)
    if restored is not None:
      logging.info("[%s] Resuming from step %d", name, start)
  last_saved = start if start else None
  writer = metric_writer.MetricWriter(metrics_dir, resume_step=start, enabled=is_writer) if metrics_dir else None
  tracker = progress.Progress(num_steps, start, name=name)
  result = LoopResult(state, {}, start)
  metrics: Any = {}

  def ensure_healthy(scalars: dict | None, step: int) -> dict:
    if check is None:
      return {}
    extra, problem = check(state, scalars, step)
    if problem:
      where = f"step {last_saved} in {ckpt.directory}" if ckpt is not None and last_saved else "none (no checkpoint yet)"
      raise NonFiniteError(f"{problem}. Last good checkpoint: {where}. {nonfinite_hint}".strip())
    return extra

  def save(done: int) -> None:
    nonlocal last_saved
    ensure_healthy(None, done)
    ckpt.save(done, state)
    last_saved = done
    if writer is not None:
      writer.flush()  # metrics up to a checkpoint survive a preemption (uploaded for URL workdirs)

  # Without checkpoints a stopped run could not resume: it finishes, and the signal reaches
  # an enclosing StopSignal (a protocol that stops between its stages).
  stop_signal = preemption.StopSignal() if ckpt is not None else preemption.NeverStop()
  try:
    with stop_signal as stop:
      for step in range(start, num_steps, chunk):
        if one_in_flight:
          jax.block_until_ready(metrics)
        state, metrics = step_fn(state, step)
        done = min(step + chunk, num_steps)
        is_last = done == num_steps
        if _due(done, log_every, is_last, chunk):
          scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
          scalars.update(ensure_healthy(scalars, done))
          if images_per_step:
            scalars["images_per_sec"] = tracker.rate(done) * images_per_step
          if writer is not None:
            writer.write(done, scalars)
          result.last_record = {"step": done, **scalars}
          tracker.report(done, describe(scalars) if describe else "")
        if is_writer:
          for action in periodic:
            if _due(done, action.every, is_last, chunk):
              action.action(state, done)
        if ckpt is not None and checkpoint_every and _due(done, checkpoint_every, False, chunk) and not is_last:
          save(done)
        if ckpt is not None and is_last:
          save(done)
        if not is_last and stop.should_stop():
          if ckpt is not None:
            save(done)
            ckpt.wait()
          where = f"; checkpoint saved in {ckpt.directory}" if ckpt is not None else ""
          logging.warning("Stopped by %s at step %d%s. Rerun the same command to resume.",
                          stop.received or "a signal on another process", done, where)
          result.stopped_by, result.stopped_at = stop.received or "remote", done
          break
  finally:
    # Also on errors: a pending async save must finish (or its thread dies at exit).
    if ckpt is not None:
      ckpt.wait()
      ckpt.close()
    if writer is not None:
      writer.close()
  result.state = state
  if not result.last_record and metrics_dir and is_writer:
    records = metric_writer.read_metrics(metrics_dir)
    result.last_record = records[-1] if records else {}
  return result


def nonfinite_names(scalars: dict, names: Sequence[str]) -> list[str]:
  """The names among `names` whose value in `scalars` is NaN or Inf."""
  return [k for k in names if k in scalars and not math.isfinite(scalars[k])]
