"""Non-finite updates inside a jitted train step: dropped before they reach the state, and counted.

A NaN or Inf loss or gradient would poison the parameters and optimiser moments and, through
them, every later step and checkpoint. The steps keep the old state for such an update
(`guard_update` or `guard_nonfinite`; `apply_if_finite` where no counters are kept) and record the first bad
step and which metrics were bad (`health`), so that the loop can stop with a clear message or
skip and count, as the config asks.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Metrics = dict[str, jax.Array]
State = TypeVar("State")
POLICIES = ("error", "skip")  # config.on_nonfinite: stop at the first non-finite update, or skip and count them
HINT = "Lower the learning rate, or pass --config.on_nonfinite=skip to skip such updates."


def initial_health() -> dict[str, jax.Array]:
  """Counters of non-finite steps: how many, the first one, and which metrics went bad there."""
  return {"nonfinite_steps": jnp.zeros((), jnp.int32), "first_bad_step": jnp.full((), -1, jnp.int32),
          "first_bad_mask": jnp.zeros((), jnp.int32)}


def nonfinite_mask(metrics: Metrics) -> jax.Array:
  """Bit i set when metric sorted(metrics)[i] is NaN or Inf."""
  bits = [(~jnp.isfinite(metrics[k])).astype(jnp.int32) << i for i, k in enumerate(sorted(metrics))]
  return sum(bits, jnp.zeros((), jnp.int32))


def decode_mask(mask: int, metric_names) -> list[str]:
  """Names of the metrics whose bits are set in `mask` (see `nonfinite_mask`, `guard_nonfinite`)."""
  names = sorted(metric_names) + ["gradients/parameters"]
  return [k for i, k in enumerate(names) if (int(mask) >> i) & 1]


def _tree_all_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guard_nonfinite(old: State, new: State, metrics: Metrics) -> tuple[State, Metrics]:
  """Keeps `old` parameters when the update produced NaN/Inf, and records the event.

  Works for any flax struct state with `step` and `health` fields (the GAN and the translation states).

  A NaN loss or gradient makes the new parameters or optimizer moments non-finite;
  selecting the old values inside the jitted step means no NaN can ever reach the
  train state (hence no checkpoint), whatever the loop decides to do next.
  """
  mask = nonfinite_mask(metrics)
  # Every float leaf of the new state: parameters, optimizer moments, running statistics, and
  # whatever a family adds (the translation models' image pools); integer leaves are skipped.
  ok = (mask == 0) & _tree_all_finite(new)
  # One conditional over the whole state, not a select per leaf: with the select, XLA:CPU took
  # 65 of the 80 s compiling a StyleGAN2 step (each select depends on every leaf through `ok`).
  kept = jax.lax.cond(ok, lambda: new, lambda: old)
  return _recorded(old, kept.replace(step=new.step), ok, mask, metrics)


def _squares_finite(grads: PyTree) -> jax.Array:
  """Whether every gradient and its square are finite.

  A finite gradient above ~1.8e19 has an infinite square: Adam's second moment would become
  Inf (and that parameter freeze) while the parameters stay finite, so the check is on squares.
  """
  return _tree_all_finite(jax.tree.map(jnp.square, grads))


def guard_update(old: State, make_new: Callable[[], State], metrics: Metrics,
                 grads: PyTree) -> tuple[State, Metrics]:
  """`guard_nonfinite` for an update decided by its inputs: `make_new()` runs only if `metrics` and `grads` are finite.

  Use it where every new value is a function of the gradients and losses that stays finite
  when they and the gradients' squares are (Adam or SGD with a finite learning rate), so that
  the check can come first. The new state is then built inside the conditional and written
  straight into the state's (donated) buffers; `guard_nonfinite` chooses between two states
  already built, and returning the chosen one copies it: on XLA:CPU that copy and the check of
  the new state took about 60 ms of a 300 ms pix2pix step with 16.8 M parameters (docs/benchmark.md).

  Args:
    old: the state before the step (`step` and `health` fields).
    make_new: builds the updated state (its `step` is set here, to `old.step + 1`).
    metrics: the step's scalar metrics, losses among them.
    grads: every gradient the update applies.
  """
  mask = nonfinite_mask(metrics)
  ok = (mask == 0) & _squares_finite(grads)
  kept = jax.lax.cond(ok, make_new, lambda: old)
  return _recorded(old, kept.replace(step=old.step + 1), ok, mask, metrics)


def _recorded(old: State, kept: State, ok: jax.Array, mask: jax.Array, metrics: Metrics) -> tuple[State, Metrics]:
  """`kept` with the health counters updated for a step whose update was (`ok`) or was not applied."""
  h = old.health
  first = h["nonfinite_steps"] == 0
  health = {
      "nonfinite_steps": h["nonfinite_steps"] + (~ok).astype(jnp.int32),
      "first_bad_step": jnp.where(first & ~ok, old.step + 1, h["first_bad_step"]),
      # Losses finite but gradients or the new state were not: the extra bit len(metrics) says so.
      "first_bad_mask": jnp.where(first & ~ok, jnp.where(mask == 0, 1 << len(metrics), mask),
                                  h["first_bad_mask"]),
  }
  metrics = {**metrics, "nonfinite": (~ok).astype(jnp.float32)}
  return kept.replace(health=health), metrics


def apply_if_finite(old: PyTree, make_new: Callable[[], PyTree], loss: jax.Array, grads: PyTree) -> PyTree:
  """`make_new()` where `loss`, every gradient and its square are finite, else `old` (the update is dropped).

  The new values are built inside the conditional (see `guard_update`), and it is one
  conditional per tree, not a select per leaf: XLA:CPU fuses the all-gradients test into
  every leaf's select; a tiny denoiser's update compiled in 31.5 s that way, 4.6 s with the cond (-O0).
  """
  finite = jnp.isfinite(loss) & _squares_finite(grads)
  return jax.lax.cond(finite, make_new, lambda: old)


def health_check(on_nonfinite: str, metric_names: list[str]) -> Callable:
  """The loop's check (`loop.CheckFn`) of a guarded state: counts skipped updates; in 'error' mode names the first.

  States stacked on a leading member axis (`stacked_gan_loop`) sum their members' skips and
  name the first member with one.
  """

  def check(state, scalars: dict | None, step: int):
    del step
    health = jax.device_get(state.health)
    counts = np.asarray(health["nonfinite_steps"])
    extra = {"nonfinite_skips": int(counts.sum())} if scalars is not None else {}
    if counts.any() and on_nonfinite == "error":
      k = () if counts.ndim == 0 else int(np.flatnonzero(counts)[0])
      bad = ", ".join(decode_mask(np.asarray(health["first_bad_mask"])[k], metric_names))
      member = "" if counts.ndim == 0 else f" of member {k}"
      return extra, (f"Non-finite {bad} at step {int(np.asarray(health['first_bad_step'])[k])}{member}; "
                     "the update was not applied")
    return extra, None

  return check
