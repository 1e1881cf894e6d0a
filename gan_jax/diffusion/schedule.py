"""Noise schedules of denoising diffusion and the closed forms that follow from them.

A schedule is the sequence beta_1..beta_T of the forward process
q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I); with alpha_t = 1 - beta_t and
alpha_bar_t = prod_{s <= t} alpha_s, q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
(Ho et al., NeurIPS 2020). Timesteps here are 0-based: index t in [0, T) is the paper's t + 1.
"""
from __future__ import annotations

import math
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

PREDICTIONS = ("epsilon", "v")


@chex.dataclass(frozen=True)
class Schedule:
  """A discrete schedule of T steps (arrays of length T, float32).

  Attributes:
    betas: beta_t.
    alpha_bars: alpha_bar_t = prod_{s <= t} (1 - beta_s), decreasing from ~1 towards 0.
  """
  betas: jax.Array
  alpha_bars: jax.Array

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def from_betas(betas) -> Schedule:
  betas = np.asarray(betas, np.float64)
  return Schedule(betas=jnp.asarray(betas, jnp.float32), alpha_bars=jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def linear(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
  """Ho et al.'s schedule: betas evenly spaced from beta_start to beta_end (their T = 1000 values)."""
  return from_betas(np.linspace(beta_start, beta_end, num_steps))


def cosine(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
  """Nichol & Dhariwal's schedule (ICML 2021): alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2).

  Betas come from consecutive ratios of alpha_bar and are clipped at `max_beta` so the last steps
  stay finite.
  """
  f = lambda t: np.cos((t / num_steps + offset) / (1.0 + offset) * math.pi / 2.0) ** 2
  steps = np.arange(num_steps + 1, dtype=np.float64)
  alpha_bar = f(steps) / f(0.0)
  return from_betas(np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta))


SCHEDULES: dict[str, Callable[[int], Schedule]] = {"linear": linear, "cosine": cosine}


def make(name: str, num_steps: int) -> Schedule:
  if name not in SCHEDULES:
    raise ValueError(f"Unknown schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")
  if num_steps < 1:
    raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
  return SCHEDULES[name](num_steps)


def _per_example(values: jax.Array, t: jax.Array, like: jax.Array) -> jax.Array:
  """values[t] shaped to broadcast against a batch `like` [B, ...]."""
  return values[t].reshape((-1,) + (1,) * (like.ndim - 1))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, for a batch of timesteps t [B]."""
  ab = _per_example(schedule.alpha_bars, t, x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def snr(schedule: Schedule, t: jax.Array) -> jax.Array:
  """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)."""
  ab = schedule.alpha_bars[t]
  return ab / (1.0 - ab)


def v_target(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x0 (Salimans & Ho, ICLR 2022)."""
  ab = _per_example(schedule.alpha_bars, t, x0)
  return jnp.sqrt(ab) * noise - jnp.sqrt(1.0 - ab) * x0


def to_epsilon_and_x0(schedule: Schedule, x_t: jax.Array, t: jax.Array, output: jax.Array,
                      prediction: str) -> tuple[jax.Array, jax.Array]:
  """(eps, x0) implied by the denoiser's `output` at x_t, for an epsilon- or v-predicting model."""
  ab = _per_example(schedule.alpha_bars, t, x_t)
  if prediction == "epsilon":
    eps = output
    return eps, (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
  if prediction == "v":
    return jnp.sqrt(1.0 - ab) * x_t + jnp.sqrt(ab) * output, jnp.sqrt(ab) * x_t - jnp.sqrt(1.0 - ab) * output
  raise ValueError(f"Unknown prediction '{prediction}'; choose one of: {', '.join(PREDICTIONS)}")
