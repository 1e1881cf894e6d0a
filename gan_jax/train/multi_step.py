"""Step transformations that change how a train step is compiled, not what it computes.

* `scan_steps`: several train steps per jitted call. On a fast accelerator a small
  GAN step can be shorter than the host's dispatch overhead; scanning over
  `steps_per_call` stacked batches inside one compiled call amortises it.
* `unroll_loops`: traces the step's `lax.scan` loops (the d_steps discriminator
  updates) as straight-line code. XLA:CPU lowers some convolutions inside a
  while-loop body to its slow generic loop emitter: for DCGAN on MNIST the
  discriminator's weight gradient took 3.4 s inside the (length-1) d_steps scan
  and ~30 ms outside it (`python -m experiments.benchmark --unroll_loops`; XLA
  issue jax-ml/jax#12868).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any
StepFn = Callable[[PyTree, PyTree], tuple[PyTree, dict]]
METRIC_REDUCTIONS = ("last", "mean")


def _reduce_metrics(metrics: dict, reduction: str) -> dict:
  """Collapses the leading [steps_per_call] axis of scanned metrics."""
  if reduction == "last":
    return jax.tree.map(lambda m: m[-1], metrics)
  return jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)


def scan_steps(step_fn: StepFn, steps_per_call: int, metrics: str = "last") -> StepFn:
  """Turns `step(state, batch)` into a step over `steps_per_call` stacked batches.

  The returned function runs `step_fn` once per slice of the batch's leading axis
  with `lax.scan`, so one call equals `steps_per_call` consecutive single calls on
  the same state (same randomness too: the step folds `state.step` into its key).

  Args:
    step_fn: pure `step(state, batch) -> (state, metrics)`.
    steps_per_call: how many steps one call runs; every batch leaf must have this
      many rows on its leading axis.
    metrics: 'last' returns the final step's metrics, 'mean' their mean over the call.

  Returns:
    `multi_step(state, batches) -> (state, metrics)`.

  Raises:
    ValueError: steps_per_call < 1 or an unknown `metrics` reduction (at build
      time); a batch whose leading axis is not steps_per_call (at trace time).
  """
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
  if metrics not in METRIC_REDUCTIONS:
    raise ValueError(f"Unknown metrics reduction '{metrics}'; choose one of: {', '.join(METRIC_REDUCTIONS)}")

  def multi_step(state: PyTree, batches: PyTree) -> tuple[PyTree, dict]:
    leading = {x.shape[0] for x in jax.tree.leaves(batches)}
    if leading != {steps_per_call}:
      raise ValueError(f"batch leading axes {sorted(leading)} must all equal steps_per_call={steps_per_call}")
    state, stacked = jax.lax.scan(step_fn, state, batches)
    return state, _reduce_metrics(stacked, metrics)

  return multi_step


def unroll_loops(step_fn: StepFn) -> StepFn:
  """`step_fn` with its `lax.scan` / static `while_loop`s traced as straight-line code.

  Inside `jax.disable_jit`, `lax.scan` runs its Python loop and nested jits are
  inlined, so the traced program computes the same values (same random numbers)
  without XLA while loops. Compile time grows with the trip counts.

  Args:
    step_fn: pure `step(state, batch) -> (state, metrics)`.

  Returns:
    The same function, to be called under `jax.jit`.
  """

  @functools.wraps(step_fn)
  def unrolled(*args):
    with jax.disable_jit():
      return step_fn(*args)

  return unrolled


def stack_batches(batches: list[PyTree]) -> PyTree:
  """Stacks per-step batches into the [steps_per_call, ...] input of `scan_steps`."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
