"""Training a SinGAN pyramid, or an A <-> B structural-analogy pair, scale by scale.

Scale n trains a generator G_n and a patch critic D_n while the coarser scales
stay frozen (Shaham et al., ICCV 2019, Sec. 2.2; defaults from the official code):

  * each iteration draws a sample of the frozen scales with fresh noise, x_{n-1},
    and the fake G_n(amp_n z + up(x_{n-1}), up(x_{n-1}));
  * 3 critic steps on the WGAN-GP loss with lambda = 0.1, then 3 generator steps on
    -D_n(fake) + alpha * ||G_n(rec input) - real_n||^2, alpha = 10, where the
    reconstruction input is a fixed noise map at the coarsest scale and the
    upsampled reconstruction of the coarser scales (zero noise) above it;
  * amp_0 = 1 and amp_n = 0.1 * RMSE(real_n, up(reconstruction_{n-1}));
  * Adam lr 5e-4, betas (0.5, 0.999), lr x 0.1 from iteration 1600 of 2000;
  * the networks of a scale start as a copy of the previous scale's when both
    have the same number of filters.

Each scale's iterations run as jitted `lax.scan` chunks of `chunk_size`
iterations; iteration i of scale n uses the key fold_in(fold_in(seed_key, n), i),
so a scale stopped between chunks and resumed replays the same randomness. The
chunks run in the project's training loop (`gan_jax.train.loop`) and every scale
is a stage (`gan_jax.stages`): after every scale (and on SIGTERM/SIGINT, between
chunks) its state is saved to workdir/checkpoints/scale_XX; a rerun restores
finished scales instead of training them. Every scale appends one record to
workdir/scales.jsonl.

With two images (config.image_b) every per-image quantity is a dict keyed 'a'
and 'b', and the analogy terms of `gan_jax.singan.analogy` join the losses.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from gan_jax import fs
from gan_jax import losses
from gan_jax import preemption
from gan_jax import stages
from gan_jax import workdir as workdir_lib
from gan_jax.models import singan as models
from gan_jax.singan import analogy
from gan_jax.singan import apply as apply_lib
from gan_jax.singan import pyramid as pyramid_lib
from gan_jax.train import loop

CHANNELS = 3
SCALE_LOG = "scales.jsonl"
# In each scale's checkpoint folder: the scale finished (removing the folder retrains the scale).
SCALE_MARKER = "scale.json"
# Fields a rerun may change: they do not change what any scale computes.
RESUMABLE_FIELDS = ("chunk_size", "conv_impl", "num_samples", "sample_start_scale", "wide_factor", "sr_factor",
                    "analogy_start_scale")
# XLA's RngBitGenerator ('rbg') compiles ~6x faster on CPU than threefry bits for image-sized noise,
# and compilation dominates short runs; its streams are deterministic for a given program and backend.
PRNG_IMPL = "rbg"
_REC_NOISE_TAG = 0x5EC
_OUTPUT_TAG = 0x0117


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


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field for malformed configs."""
  if not 0.0 < config.scale_factor < 1.0:
    raise ValueError(f"config.scale_factor must be in (0, 1), got {config.scale_factor}")
  receptive = 2 * config.num_blocks + 1
  if config.min_size < receptive:
    raise ValueError(f"config.min_size={config.min_size} is smaller than the critic's {receptive}x{receptive} patch")
  for field in ("num_blocks", "iters_per_scale", "chunk_size", "d_steps", "g_steps", "base_features",
                "max_features", "features_double_every", "num_samples"):
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field} must be a positive integer, got {config[field]}")
  models.resolve_conv_impl(config.conv_impl, "cpu")
  if config.max_size < config.min_size:
    raise ValueError(f"config.max_size={config.max_size} is below config.min_size={config.min_size}")


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


def _features(config, n: int) -> int:
  return models.features_at_scale(n, config.base_features, config.max_features, config.features_double_every)


def _build_setup(config, n: int, sizes, domains) -> ScaleSetup:
  impl = models.resolve_conv_impl(config.conv_impl, jax.default_backend())
  return ScaleSetup(generator=models.SinGenerator(_features(config, n), config.num_blocks, impl),
                    critic=models.PatchCritic(_features(config, n), config.num_blocks, impl),
                    sizes=tuple(sizes[:n + 1]), domains=domains)


def fit_scale(config, workdir: str, setup: ScaleSetup, consts, previous: ScaleState | None, optimizers,
              key) -> tuple[ScaleState, dict[str, Any]]:
  """Trains (or restores) one scale; returns its state and its scale-log record."""
  n, iters = setup.scale, config.iters_per_scale
  if n == 0:
    amps = {d: 1.0 for d in setup.domains}
  else:
    amps = {d: config.noise_amp_scale * float(jnp.sqrt(jnp.mean(jnp.square(consts["real"][d] - consts["rec_prev"][d]))))
            for d in setup.domains}
  # SinGAN starts a scale from the previous scale's networks when they have the same width.
  copy = previous is not None and config.init_from_previous and _features(config, n - 1) == _features(config, n)
  g_tx, d_tx = optimizers
  state = init_scale_state(setup, jax.random.fold_in(key, 1), g_tx, d_tx, amps, previous if copy else None)
  # Restored arrays are committed to a device; committing fresh ones too gives jitted functions one cache entry.
  state = jax.device_put(state, jax.local_devices()[0])
  run_chunk = make_chunk_fn(setup, LossWeights(config.gp_weight, config.alpha, config.cycle_weight,
                                               config.d_steps, config.g_steps), g_tx, d_tx)
  chunks: list[dict] = []

  def step_fn(state, done):
    length = min(config.chunk_size, iters - done)
    t0 = time.perf_counter()
    state, metrics = run_chunk(state, consts, key, jnp.arange(done, done + length))
    metrics = jax.block_until_ready(jax.tree.map(jnp.mean, metrics))
    chunks.append({"iterations": length, "seconds": time.perf_counter() - t0})
    return state, metrics

  def check(state, scalars, done):
    del state
    if scalars is None:
      return {}, None
    chunks[-1].update(scalars)
    bad = loop.nonfinite_names(scalars, list(scalars))
    return {}, (f"Non-finite {', '.join(bad)} at scale {n}, iteration {done}" if bad else None)

  result = loop.train(state, step_fn, num_steps=iters, name=f"singan scale {n}", log_every=config.chunk_size,
                      chunk=config.chunk_size, checkpoint_dir=scale_checkpoints(workdir, n), keep_checkpoints=1,
                      async_checkpoints=False, check=check, nonfinite_hint="Lower --config.lr_g and --config.lr_d.",
                      describe=lambda s: " ".join(f"{k}={v:.4f}" for k, v in s.items()))
  state = result.state
  record = {"scale": n, "size": list(setup.sizes[-1]), "features": setup.generator.features,
            "resumed_from": result.start, "copied_previous": bool(copy), "iterations_trained": 0,
            "status": "stopped" if result.stopped else ("trained" if chunks else "restored"),
            "noise_amp": {d: float(state.noise_amp[d]) for d in setup.domains}}
  if chunks:
    timed = chunks[1:] or chunks  # the first chunk also compiles
    record.update(iterations_trained=(result.stopped_at or iters) - result.start,
                  seconds=sum(c["seconds"] for c in chunks), first_chunk_seconds=chunks[0]["seconds"],
                  sec_per_100_iters=100.0 * sum(c["seconds"] for c in timed) / sum(c["iterations"] for c in timed),
                  rec_first=chunks[0]["rec"], rec_last=chunks[-1]["rec"], d_loss_last=chunks[-1]["d_loss"],
                  g_adv_last=chunks[-1]["g_adv"])
    if "cycle" in chunks[-1]:
      record["cycle_last"] = chunks[-1]["cycle"]
  return state, record


def scale_checkpoints(workdir: str, scale: int) -> str:
  return fs.join(workdir, "checkpoints", f"scale_{scale:02d}")


def train(config: ml_collections.ConfigDict, workdir: str, overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes) a SinGAN pyramid, or an analogy pair when config.image_b is set, and writes its PNGs.

  Every scale is a stage (`gan_jax.stages`) whose marker lies in its checkpoint folder;
  a finished scale is restored, not trained again.

  Args:
    config: a SinGAN config.
    workdir: run folder: config.json, scales.jsonl, checkpoints/scale_XX, *.png.
    overwrite: discard an earlier run with a different config in `workdir`.

  Returns:
    {'records': this run's scale records, 'outputs': PNG names, 'sizes': scale sizes,
     'scale_factor': effective factor, 'pyramids': {domain: apply.Pyramid}, 'reals': {domain: [images]}},
    and 'stopped': True when a signal ended the run early.
  """
  validate_config(config)
  images = {d: pyramid_lib.load_image(spec) for d, spec in (("a", config.image), ("b", config.image_b)) if spec}
  domains = tuple(images)
  sizes, factor = pyramid_lib.pyramid_sizes(*images["a"].shape[:2], config.min_size, config.max_size,
                                            config.scale_factor)
  # B takes A's sizes so that every loss compares images of one shape.
  reals = {d: pyramid_lib.build_pyramid(images[d], sizes) for d in domains}
  workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=("checkpoints", SCALE_LOG),
                      resumable_fields=RESUMABLE_FIELDS)
  logging.info("SinGAN: %d scales %s, effective scale factor %.4f", len(sizes), sizes, factor)
  key = jax.random.key(config.seed, impl=PRNG_IMPL)
  rec_key = jax.random.fold_in(key, _REC_NOISE_TAG)
  pyramids = {d: apply_lib.Pyramid(modules=(), sizes=(), variables=(), noise_amps=(), rec_noise=pyramid_lib.noise(
      jax.random.fold_in(rec_key, i), (1,) + sizes[0] + (CHANNELS,), single_channel=True))
              for i, d in enumerate(domains)}
  optimizers = tuple(make_optimizer(lr, config.b1, config.b2, config.lr_milestone, config.lr_gamma, steps)
                     for lr, steps in ((config.lr_g, config.g_steps), (config.lr_d, config.d_steps)))
  records, output_key = [], jax.random.fold_in(key, _OUTPUT_TAG)
  previous: list[ScaleState] = []

  def scale_stage(n: int) -> dict:
    setup = _build_setup(config, n, sizes, domains)
    state, record = fit_scale(config, workdir, setup, scale_constants(setup, reals, pyramids),
                              previous[-1] if previous else None, optimizers, jax.random.fold_in(key, n))
    records.append(record)
    log = fs.join(workdir, SCALE_LOG)
    fs.write_text(log, (fs.read_text(log) if fs.exists(log) else "") + json.dumps(record) + "\n")
    if record["status"] == "stopped":
      raise stages.StageStopped(f"Stopped at scale {n}, iteration {record['resumed_from'] + record['iterations_trained']}")
    for d in domains:
      pyramids[d] = pyramids[d].append(setup.generator, sizes[n], state.g_vars[d], state.noise_amp[d])
      path = fs.join(workdir, _prefix(d) + f"samples_scale_{n:02d}.png")
      if record["status"] == "trained" or not fs.exists(path):
        apply_lib.save_scale_samples(path, pyramids[d], reals[d], n, jax.random.fold_in(output_key, n))
    previous[:] = [state]
    return record

  plan = [stages.Stage(f"scale {n}", fs.join(scale_checkpoints(workdir, n), SCALE_MARKER),
                       lambda n=n: scale_stage(n), work=config.iters_per_scale, resume=lambda n=n: scale_stage(n))
          for n in range(len(sizes))]
  with preemption.StopSignal() as stop:
    if not stages.Runner(plan).run(stop):
      return {"records": records, "outputs": [], "sizes": sizes, "scale_factor": factor, "stopped": True}
  outputs = _write_outputs(workdir, config, pyramids, reals, factor, output_key)
  return {"records": records, "outputs": outputs, "sizes": sizes, "scale_factor": factor, "pyramids": pyramids,
          "reals": reals}


def _prefix(domain: str) -> str:
  """Output file prefix: none for image A, 'b_' for image B."""
  return "" if domain == "a" else f"{domain}_"


def _write_outputs(workdir, config, pyramids, reals, factor, key) -> list[str]:
  outputs = []
  for d, pyr in pyramids.items():
    outputs += apply_lib.write_outputs(workdir, pyr, reals[d], key, num_samples=config.num_samples,
                                       start_scale=config.sample_start_scale, wide_factor=config.wide_factor,
                                       sr_factor=config.sr_factor, scale_factor=factor,
                                       prefix=_prefix(d))
  if len(pyramids) == 2:
    outputs += analogy.write_outputs(workdir, pyramids, reals, config.analogy_start_scale)
  return outputs
