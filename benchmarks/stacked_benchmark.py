"""Many small models as one program: a `jax.vmap`ped train step against the same models trained one by one.

A study trains many same-shaped models: one classifier per method and seed, one
DCGAN per class. Each is far too small to fill a GPU, so one call that advances
all of them (parameters stacked on a leading axis, the step vmapped over it) can
beat dispatching their steps one after another. This module measures both ways
on one device, with the same step function (`step_benchmark.build_target`), the
same initial states and the same batches, and checks that one vmapped step
leaves every member where its sequential step leaves it.

Figures: model-steps per second (members x steps / time) of each way, the
speed-up (sequential round time / vmapped call time) and the largest parameter
difference after one step.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import numpy as np

from benchmarks import step_benchmark as benchmark


@dataclasses.dataclass(frozen=True)
class StackedOptions:
  """What to measure.

  Attributes:
    model: a `step_benchmark.MODELS` name.
    members: models trained at once (seeds of a classifier, classes of the per-class DCGAN).
    batch_size: each member's batch.
    steps: timed rounds (one round = one step of every member).
    warmup: untimed rounds after compilation.
    dtype: compute dtype of the GANs.
    width: GAN base width (0: the config's).
  """
  model: str
  members: int
  batch_size: int = 128
  steps: int = 20
  warmup: int = 3
  dtype: str = "float32"
  width: int = 0


def _options(opts: StackedOptions) -> benchmark.Options:
  return benchmark.Options(model=opts.model, batch_size=opts.batch_size, steps=opts.steps, warmup=opts.warmup,
                           dtype=opts.dtype, width=opts.width)


def _stacked_batch(spec: dict, lead: tuple[int, ...], members: int) -> dict[str, np.ndarray]:
  # Each member sees its own images, as each classifier seed or per-class GAN does.
  batches = [benchmark.synthetic_batch(spec, lead, seed=m) for m in range(members)]
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def _time_rounds(run_round, state, rounds: int) -> tuple[Any, list[float]]:
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    state = run_round(state)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  return state, times


def _max_difference(a, b) -> float:
  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                       if np.size(x) else 0.0, a, b)
  return max(jax.tree.leaves(diffs), default=0.0)


def run(opts: StackedOptions) -> dict[str, Any]:
  """Measures `opts.members` copies of `opts.model` trained vmapped and one after another.

  Returns:
    A JSON-able dict: settings, per-way median round time and model-steps/s, the
    speed-up of the vmapped program and the largest state difference after one step.
  """
  if opts.members < 1:
    raise ValueError(f"members must be >= 1, got {opts.members}")
  target = benchmark.build_target(_options(opts))
  device = jax.devices()[0]
  keys = jax.random.split(jax.random.PRNGKey(0), opts.members)
  batch = jax.device_put(_stacked_batch(target.spec, target.batch_lead, opts.members), device)
  members_batches = [jax.tree.map(lambda x, m=m: x[m], batch) for m in range(opts.members)]

  init_one = jax.jit(target.init_fn)
  single = jax.jit(target.step_fn, donate_argnums=0)
  stacked = jax.jit(jax.vmap(target.step_fn), donate_argnums=0)

  # Agreement: one step from the same states and batches both ways.
  start = time.perf_counter()
  first = [single(init_one(keys[m]), members_batches[m])[0] for m in range(opts.members)]
  jax.block_until_ready(first)
  sequential_compile_s = time.perf_counter() - start
  start = time.perf_counter()
  together, _ = stacked(jax.jit(jax.vmap(target.init_fn))(keys), batch)
  jax.block_until_ready(together)
  stacked_compile_s = time.perf_counter() - start
  difference = _max_difference(jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(first)),
                               jax.device_get(together))

  def sequential_round(states):
    return [single(states[m], members_batches[m])[0] for m in range(opts.members)]

  def stacked_round(state):
    return stacked(state, batch)[0]

  states, _ = _time_rounds(sequential_round, first, opts.warmup)
  _, sequential_times = _time_rounds(sequential_round, states, opts.steps)
  together, _ = _time_rounds(stacked_round, together, opts.warmup)
  _, stacked_times = _time_rounds(stacked_round, together, opts.steps)
  seq, vec = statistics.median(sequential_times), statistics.median(stacked_times)
  return {
      "model": opts.model, "members": opts.members, "batch_size": opts.batch_size, "dtype": opts.dtype,
      "steps": opts.steps, "warmup": opts.warmup, "device_kind": device.device_kind, "platform": device.platform,
      "sequential_round_median_s": seq, "stacked_call_median_s": vec,
      "sequential_model_steps_per_sec": opts.members / seq, "stacked_model_steps_per_sec": opts.members / vec,
      "stacked_speedup": seq / vec, "sequential_first_step_s": sequential_compile_s,
      "stacked_first_step_s": stacked_compile_s, "max_state_difference_after_one_step": difference,
  }
