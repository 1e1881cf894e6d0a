"""The training-loop skeleton on a tiny pure step: logging, checkpoints, exact resume, health checks, signals."""
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import metric_writer
from gan_jax import preemption
from gan_jax.train import loop


@jax.jit
def _update(state, step):
  # x follows a pure function of the step, so any resumed run must land on the same values.
  x = state["x"] * 0.9 + jnp.sin(step.astype(jnp.float32))
  return {"x": x, "step": state["step"] + 1}, {"loss": x ** 2}


def _step(state, step):
  return _update(state, jnp.int32(step))


def _init():
  return {"x": jnp.float32(1.0), "step": jnp.int32(0)}


def _train(workdir, num_steps, **kwargs):
  options = dict(name="toy", log_every=2, checkpoint_dir=str(workdir / "checkpoints"), checkpoint_every=3,
                 metrics_dir=str(workdir), async_checkpoints=False)
  options.update(kwargs)
  return loop.train(_init(), _step, num_steps=num_steps, **options)


def test_logs_checkpoints_and_resumes_exactly(tmp_path):
  straight = _train(tmp_path / "straight", 10)
  records = metric_writer.read_metrics(str(tmp_path / "straight"))
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
  assert sorted(os.listdir(tmp_path / "straight" / "checkpoints")) == ["10", "6", "9"]  # every 3, the last; keep 3
  assert straight.last_record["step"] == 10 and straight.start == 0 and not straight.stopped

  _train(tmp_path / "resumed", 6)
  resumed = _train(tmp_path / "resumed", 10)
  assert resumed.start == 6
  assert metric_writer.read_metrics(str(tmp_path / "resumed")) == records
  np.testing.assert_array_equal(resumed.state["x"], straight.state["x"])
  # A finished run trains nothing and returns the restored state and the last record.
  again = _train(tmp_path / "resumed", 10)
  assert again.start == 10 and again.last_record == records[-1]
  np.testing.assert_array_equal(again.state["x"], straight.state["x"])


def test_chunks_and_periodic_actions(tmp_path):
  calls, samples = [], []

  def chunked(state, step):
    calls.append(step)
    for s in range(step, min(step + 4, 10)):
      state, metrics = _step(state, s)
    return state, metrics

  result = loop.train(_init(), chunked, num_steps=10, name="toy", chunk=4, log_every=4,
                      periodic=[loop.Periodic(8, lambda state, done: samples.append(done))])
  assert calls == [0, 4, 8]
  assert samples == [8, 10]  # the call that crossed step 8, and the last
  np.testing.assert_array_equal(result.state["x"], _train(tmp_path, 10).state["x"])


def test_a_health_problem_stops_naming_the_last_good_checkpoint(tmp_path):
  def check(state, scalars, step):
    if scalars is not None and step >= 8:
      return {"skips": 0}, f"Non-finite loss at step {step}"
    return ({"skips": 0} if scalars is not None else {}), None

  with pytest.raises(loop.NonFiniteError, match=r"Non-finite loss at step 8. Last good checkpoint: step 6 in "
                                                 r".*checkpoints. Lower the rate."):
    _train(tmp_path, 10, check=check, nonfinite_hint="Lower the rate.")
  assert metric_writer.read_metrics(str(tmp_path))[-1]["skips"] == 0


def test_sigterm_checkpoints_stops_and_the_rerun_finishes(tmp_path):
  def signalling(state, step):
    if step == 4:
      os.kill(os.getpid(), signal.SIGTERM)
    return _step(state, step)

  stopped = loop.train(_init(), signalling, num_steps=10, name="toy", log_every=1,
                       checkpoint_dir=str(tmp_path / "checkpoints"), metrics_dir=str(tmp_path))
  assert stopped.stopped_by == "SIGTERM" and stopped.stopped_at == 5
  assert "5" in os.listdir(tmp_path / "checkpoints")
  finished = _train(tmp_path, 10, log_every=1)
  assert finished.start == 5
  np.testing.assert_array_equal(finished.state["x"], _train(tmp_path / "straight", 10).state["x"])


def test_without_checkpoints_a_signal_reaches_the_enclosing_protocol(tmp_path):
  def signalling(state, step):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return _step(state, step)

  with preemption.StopSignal() as outer:
    result = loop.train(_init(), signalling, num_steps=6, name="toy", one_in_flight=True)
  # The run cannot resume mid-way, so it finishes; the protocol around it stops afterwards.
  assert not result.stopped and int(result.state["step"]) == 6
  assert outer.received == "SIGTERM"
  assert math.isclose(float(result.state["x"]), float(_train(tmp_path, 6).state["x"]), rel_tol=1e-6)
