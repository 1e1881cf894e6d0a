"""Samplers of a trained denoiser: ancestral DDPM and deterministic (or eta-stochastic) DDIM, with guidance.

`sample` runs a whole chain as one `lax.scan`, so it jits and shards like a train step.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.diffusion import schedule as schedule_lib

SAMPLERS = ("ddpm", "ddim")


def guided(uncond: jax.Array, cond: jax.Array, scale: float) -> jax.Array:
  """Classifier-free guidance (Ho & Salimans, 2021): uncond + scale * (cond - uncond).

  scale 0 is the unconditional prediction, 1 the conditional one, > 1 pushes towards the condition.
  """
  return uncond + scale * (cond - uncond)


def timesteps(num_train_steps: int, num_sample_steps: int) -> np.ndarray:
  """The sampler's timesteps, descending: evenly spaced over [0, T), always ending at 0."""
  if not 1 <= num_sample_steps <= num_train_steps:
    raise ValueError(f"sampling steps must lie in [1, {num_train_steps}], got {num_sample_steps}")
  return np.unique(np.round(np.linspace(0, num_train_steps - 1, num_sample_steps)).astype(np.int32))[::-1].copy()


def _step(schedule, x, t, t_prev, output, key, sampler, prediction, eta):
  """x_t -> x_{t_prev} (t_prev = -1: the final x0)."""
  eps, x0 = schedule_lib.to_epsilon_and_x0(schedule, x, jnp.full((x.shape[0],), t), output, prediction)
  ab = schedule.alpha_bars[t]
  ab_prev = jnp.where(t_prev >= 0, schedule.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
  noise = jax.random.normal(key, x.shape, x.dtype)
  if sampler == "ddim":
    # Song et al. (ICLR 2021), eq. 12: eta = 0 is deterministic, eta = 1 matches DDPM's variance.
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_prev) * x0 + direction + sigma * noise
  # Ancestral DDPM over a (possibly strided) chain: the posterior q(x_prev | x_t, x0) with
  # beta = 1 - ab / ab_prev, variance (1 - ab_prev) / (1 - ab) * beta (Ho et al., eq. 7).
  beta = 1.0 - ab / ab_prev
  mean = (jnp.sqrt(ab_prev) * beta / (1.0 - ab)) * x0 + (jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab)) * x
  variance = (1.0 - ab_prev) / (1.0 - ab) * beta
  return mean + jnp.where(t_prev >= 0, jnp.sqrt(variance), 0.0) * noise


def sample(model_fn: Callable[[jax.Array, jax.Array], jax.Array], schedule: schedule_lib.Schedule, x_T: jax.Array,
           key: jax.Array, *, num_steps: int, sampler: str = "ddim", prediction: str = "epsilon",
           eta: float = 0.0, return_trajectory: bool = False):
  """Denoises x_T [B, ...] in `num_steps` steps; returns x0 (and every intermediate x when asked).

  Args:
    model_fn: (x_t, t [B]) -> the denoiser's output (guidance already applied).
    schedule: the training schedule.
    x_T: the starting noise.
    key: the sampler's randomness (ancestral noise; unused by DDIM with eta = 0), folded per step.
    num_steps: sampling steps (<= the schedule's).
    sampler: 'ddpm' or 'ddim'.
    prediction: what the model predicts, 'epsilon' or 'v'.
    eta: DDIM's stochasticity.
    return_trajectory: also return x after each step [num_steps, B, ...].
  """
  if sampler not in SAMPLERS:
    raise ValueError(f"Unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
  ts = timesteps(schedule.num_steps, num_steps)
  pairs = jnp.asarray(np.stack([ts, np.append(ts[1:], -1)], axis=1))

  def body(x, pair_and_index):
    (t, t_prev), i = pair_and_index
    output = model_fn(x, jnp.full((x.shape[0],), t))
    x = _step(schedule, x, t, t_prev, output, jax.random.fold_in(key, i), sampler, prediction, eta)
    return x, (x if return_trajectory else None)

  x0, trajectory = jax.lax.scan(body, x_T, (pairs, jnp.arange(len(ts))))
  return (x0, trajectory) if return_trajectory else x0
