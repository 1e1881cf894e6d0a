"""The denoising training objective: draw t and noise, noise x0 to x_t, regress the model's target."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gan_jax.diffusion import schedule as schedule_lib


def target(schedule: schedule_lib.Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array,
           prediction: str) -> jax.Array:
  """What the denoiser regresses: the noise (epsilon) or v."""
  if prediction == "epsilon":
    return noise
  if prediction == "v":
    return schedule_lib.v_target(schedule, x0, t, noise)
  raise ValueError(f"Unknown prediction '{prediction}'; choose one of: {', '.join(schedule_lib.PREDICTIONS)}")


def denoising_loss(model_fn: Callable[[jax.Array, jax.Array], jax.Array], schedule: schedule_lib.Schedule,
                   x0: jax.Array, key: jax.Array, prediction: str = "epsilon") -> jax.Array:
  """Ho et al.'s simple loss: mean ||target - model(x_t, t)||^2 with t ~ U{0..T-1} and noise ~ N(0, I).

  Args:
    model_fn: (x_t [B, ...], t [B]) -> prediction [B, ...] (conditioning already bound).
    schedule: the noise schedule.
    x0: clean data [B, ...].
    key: PRNG key for t and the noise.
    prediction: 'epsilon' or 'v'.
  """
  t_key, noise_key = jax.random.split(key)
  t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_steps)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = schedule_lib.q_sample(schedule, x0, t, noise)
  return jnp.mean(jnp.square(model_fn(x_t, t) - target(schedule, x0, t, noise, prediction)))
