"""One SinGAN scale's state and its jitted training chunk (Shaham et al., ICCV 2019, Sec. 2.2).

`make_chunk_fn` returns the pure function that runs `chunk_size` iterations of a scale as one
`lax.scan`: per iteration `d_steps` WGAN-GP critic updates on the patch critic, then `g_steps`
generator updates on the adversarial and reconstruction terms (and, for an A <-> B pair, the
analogy terms of `gan_jax.singan.analogy`). `gan_jax.singan.train` drives the scales.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gan_jax import losses
from gan_jax.models import singan as models
from gan_jax.singan import analogy
from gan_jax.singan import apply as apply_lib
from gan_jax.singan import pyramid as pyramid_lib

CHANNELS = 3


@flax.struct.dataclass
class ScaleState:
  """What changes while one scale trains; a pytree of arrays, checkpointed per scale."""
  g_vars: Any  # {domain: {'params', 'batch_stats'}}
  d_params: Any  # {domain: params}
  g_opt: Any
  d_opt: Any
  noise_amp: Any  # {domain: scalar}


@dataclasses.dataclass(frozen=True)
class ScaleSetup:
  """The static description of one scale: its networks, the sizes of scales 0..n and the domains."""
  generator: models.SinGenerator
  critic: models.PatchCritic
  sizes: tuple[tuple[int, int], ...]
  domains: tuple[str, ...]

  @property
  def scale(self) -> int:
    return len(self.sizes) - 1


@dataclasses.dataclass(frozen=True)
class LossWeights:
  gp_weight: float = 0.1
  alpha: float = 10.0
  cycle_weight: float = 1.0
  d_steps: int = 3
  g_steps: int = 3


@functools.lru_cache(maxsize=None)
def make_optimizer(lr: float, b1: float, b2: float, milestone: int, gamma: float,
                   steps_per_iter: int) -> optax.GradientTransformation:
  """Adam whose lr drops by `gamma` at iteration `milestone` (counted in updates: steps_per_iter per iteration).

  Cached, so equal settings give the same object and `make_chunk_fn` can reuse its compiled chunk.
  """
  schedule = optax.piecewise_constant_schedule(lr, {milestone * steps_per_iter: gamma})
  return optax.flatten(optax.adam(schedule, b1=b1, b2=b2))


def critic_penalty(score_map_fn, real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """WGAN-GP penalty of a patch critic via `gan_jax.losses.gradient_penalty`.

  SinGAN penalises (|grad_pixel|_2 - 1)^2 averaged over pixels, where grad_pixel
  is the channel vector of the gradient of the summed score map. Scoring an
  example as sum(map) / sqrt(H * W) makes the whole-image gradient norm used by
  `gradient_penalty` the root mean square of those per-pixel norms, so the penalty
  asks for the same per-pixel slope whatever the image size.

  Args:
    score_map_fn: [N, H, W, C] -> [N, h, w, 1] patch scores.
    real: [N, H, W, C] real images.
    fake: generated images of the same shape.
    key: PRNG key of the interpolation.

  Returns:
    The scalar penalty (not yet weighted by lambda).
  """
  norm = 1.0 / math.sqrt(real.shape[1] * real.shape[2])
  return losses.gradient_penalty(lambda x: jnp.sum(score_map_fn(x), axis=(1, 2, 3)) * norm, real, fake, key)


@functools.partial(jax.jit, static_argnames=("setup", "g_tx", "d_tx"))
def init_scale_state(setup: ScaleSetup, key: jax.Array, g_tx, d_tx, noise_amp: dict[str, Any],
                     previous: ScaleState | None = None) -> ScaleState:
  """Fresh networks for every domain, or a copy of `previous`'s networks (same width), with new optimizers."""
  if previous is not None:
    g_vars, d_params = previous.g_vars, previous.d_params
  else:
    image = jnp.zeros((1,) + setup.sizes[-1] + (CHANNELS,))
    g_vars, d_params = {}, {}
    for i, d in enumerate(setup.domains):
      g_key, d_key = jax.random.split(jax.random.fold_in(key, i))
      g_vars[d] = dict(setup.generator.init(g_key, image, image, train=False))
      d_params[d] = setup.critic.init(d_key, image)["params"]
  g_params = {d: g_vars[d]["params"] for d in setup.domains}
  return ScaleState(g_vars=g_vars, d_params=d_params, g_opt=g_tx.init(g_params), d_opt=d_tx.init(d_params),
                    noise_amp={d: jnp.asarray(noise_amp[d], jnp.float32) for d in setup.domains})


def _generator_fn(generator: models.SinGenerator, params, stats):
  """gen(d, inputs) runs G_d in training mode on a list of (noisy, prev) pairs of [1, H, W, C] images at once.

  vmap gives every pair its own BatchNorm statistics, as SinGAN's separate batches
  of one do, while XLA sees one convolution per layer (a much smaller program to
  compile); the running averages take the mean of the pairs' updates. The returned
  dict collects the updated statistics.
  """
  stats = dict(stats)

  def gen(d, inputs):
    def one(noisy, prev):
      return generator.apply({"params": params[d], "batch_stats": stats[d]}, noisy, prev, train=True,
                             mutable=["batch_stats"])

    out, updated = jax.vmap(one)(jnp.stack([x for x, _ in inputs]), jnp.stack([p for _, p in inputs]))
    stats[d] = jax.tree.map(lambda s: jnp.mean(s, axis=0), updated["batch_stats"])
    return list(out)

  return gen, stats


def _judged_inputs(domains, noisy, prev, real):
  """{d: inputs whose G_d outputs critic d judges}: the sample from noise (and, for pairs, the other image)."""
  return {d: [(noisy[d], prev[d])] + analogy.translation_inputs(domains, real, d) for d in domains}


@functools.lru_cache(maxsize=8)
def make_chunk_fn(setup: ScaleSetup, weights: LossWeights, g_tx, d_tx):
  """Jitted (state, consts, key, iterations [k]) -> (state, metrics [k]) running k training iterations in a scan.

  `consts` holds the pyramids of the frozen scales ('frozen'), real images ('real')
  and the reconstruction inputs ('rec_in', 'rec_prev'), each keyed by domain; iteration
  `it` draws its randomness from fold_in(key, it). Cached per scale description,
  so a rerun in the same process does not compile again.
  """
  domains, critic = setup.domains, setup.critic

  def d_loss(d_params, fakes, real, k):
    wasserstein, gp = 0.0, 0.0
    for i, d in enumerate(domains):
      score = lambda x, p=d_params[d]: critic.apply({"params": p}, x)  # pylint: disable=cell-var-from-loop
      fake = jnp.concatenate(fakes[d])
      scores = score(jnp.concatenate([real[d], fake]))
      # Sums over the judged images, as separate real-vs-fake terms would.
      count = fake.shape[0]
      wasserstein += count * losses.wasserstein_discriminator_loss(scores[:1], scores[1:])
      gp += count * critic_penalty(score, jnp.repeat(real[d], count, axis=0), fake, jax.random.fold_in(k, i))
    total = wasserstein + weights.gp_weight * gp
    return total, {"d_loss": total, "gp": gp}

  def g_loss(params, stats, d_params, judged, consts):
    gen, new_stats = _generator_fn(setup.generator, params, stats)
    real = consts["real"]
    outs = {d: gen(d, judged[d] + [(consts["rec_in"][d], consts["rec_prev"][d])]) for d in domains}
    adv = sum(len(judged[d]) * losses.wasserstein_generator_loss(
        critic.apply({"params": d_params[d]}, jnp.concatenate(outs[d][:-1]))) for d in domains)
    rec = sum(jnp.mean(jnp.square(outs[d][-1] - real[d])) for d in domains)
    metrics = {"g_adv": adv, "rec": rec}
    total = adv + weights.alpha * rec
    if len(domains) == 2:
      # outs[o][1] is G_o applied to image d: d translated into o.
      translated = {d: outs[analogy.other(domains, d)][1] for d in domains}
      metrics["cycle"] = analogy.cycle_loss(gen, domains, real, translated)
      total = total + weights.cycle_weight * metrics["cycle"]
    return total, (new_stats, metrics)

  def iteration(state: ScaleState, it, consts, key):
    k_prev, k_noise, k_d = jax.random.split(jax.random.fold_in(key, it), 3)
    prev, noisy = {}, {}
    for i, d in enumerate(domains):
      if setup.scale == 0:
        prev[d] = jnp.zeros((1,) + setup.sizes[0] + (CHANNELS,))
      else:  # a random sample of the frozen scales
        prev[d] = apply_lib.upsample(apply_lib.random_samples(consts["frozen"][d], jax.random.fold_in(k_prev, i), 1),
                                     setup.sizes[-1])
      z = pyramid_lib.noise(jax.random.fold_in(k_noise, i), prev[d].shape, single_channel=setup.scale == 0)
      noisy[d] = state.noise_amp[d] * z + prev[d]
    params = {d: state.g_vars[d]["params"] for d in domains}
    stats = {d: state.g_vars[d]["batch_stats"] for d in domains}
    judged = _judged_inputs(domains, noisy, prev, consts["real"])
    # The generator does not change during the critic steps, so they all judge one set of fakes.
    gen = _generator_fn(setup.generator, params, stats)[0]
    fakes = jax.lax.stop_gradient({d: gen(d, judged[d]) for d in domains})

    def d_step(carry, k):
      d_params, opt = carry
      (_, metrics), grads = jax.value_and_grad(d_loss, has_aux=True)(d_params, fakes, consts["real"], k)
      updates, opt = d_tx.update(grads, opt, d_params)
      return (optax.apply_updates(d_params, updates), opt), metrics

    (d_params, d_opt), d_metrics = jax.lax.scan(d_step, (state.d_params, state.d_opt),
                                                jax.random.split(k_d, weights.d_steps))

    def g_step(carry, _):
      params, stats, opt = carry
      (_, (stats, metrics)), grads = jax.value_and_grad(g_loss, has_aux=True)(params, stats, d_params, judged, consts)
      updates, opt = g_tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), stats, opt), metrics

    (params, stats, g_opt), g_metrics = jax.lax.scan(g_step, (params, stats, state.g_opt), None,
                                                     length=weights.g_steps)
    g_vars = {d: {"params": params[d], "batch_stats": stats[d]} for d in domains}
    metrics = jax.tree.map(lambda m: m[-1], {**d_metrics, **g_metrics})
    return state.replace(g_vars=g_vars, d_params=d_params, g_opt=g_opt, d_opt=d_opt), metrics

  @jax.jit
  def run_chunk(state, consts, key, iterations):
    return jax.lax.scan(lambda s, it: iteration(s, it, consts, key), state, iterations)

  return run_chunk


def scale_constants(setup: ScaleSetup, reals, pyramids: dict[str, apply_lib.Pyramid]) -> dict[str, Any]:
  """The jit inputs of a scale that stay fixed while it trains (see `make_chunk_fn`), from the coarser `pyramids`."""
  n = setup.scale
  consts = {"frozen": {}, "real": {}, "rec_in": {}, "rec_prev": {}}
  for d, pyr in pyramids.items():
    consts["frozen"][d] = pyr
    consts["real"][d] = reals[d][n]
    if n == 0:
      consts["rec_in"][d], consts["rec_prev"][d] = pyr.rec_noise, jnp.zeros_like(pyr.rec_noise)
    else:
      consts["rec_in"][d] = consts["rec_prev"][d] = apply_lib.upsample(apply_lib.reconstruct(pyr), setup.sizes[-1])
  return consts
