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

Each scale's iterations run as jitted `lax.scan` chunks of `chunk_size` (`scale_step`)
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

import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from gan_jax import fs
from gan_jax import preemption
from gan_jax import stages
from gan_jax import workdir as workdir_lib
from gan_jax.models import singan as models
from gan_jax.singan import analogy
from gan_jax.singan import apply as apply_lib
from gan_jax.singan import pyramid as pyramid_lib
from gan_jax.singan import scale_step
from gan_jax.train import loop

CHANNELS = scale_step.CHANNELS
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


def _features(config, n: int) -> int:
  return models.features_at_scale(n, config.base_features, config.max_features, config.features_double_every)


def _build_setup(config, n: int, sizes, domains) -> scale_step.ScaleSetup:
  impl = models.resolve_conv_impl(config.conv_impl, jax.default_backend())
  return scale_step.ScaleSetup(generator=models.SinGenerator(_features(config, n), config.num_blocks, impl),
                               critic=models.PatchCritic(_features(config, n), config.num_blocks, impl),
                               sizes=tuple(sizes[:n + 1]), domains=domains)


def fit_scale(config, workdir: str, setup: scale_step.ScaleSetup, consts, previous: scale_step.ScaleState | None,
              optimizers, key) -> tuple[scale_step.ScaleState, dict[str, Any]]:
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
  state = scale_step.init_scale_state(setup, jax.random.fold_in(key, 1), g_tx, d_tx, amps, previous if copy else None)
  # Restored arrays are committed to a device; committing fresh ones too gives jitted functions one cache entry.
  state = jax.device_put(state, jax.local_devices()[0])
  weights = scale_step.LossWeights(config.gp_weight, config.alpha, config.cycle_weight, config.d_steps, config.g_steps)
  run_chunk = scale_step.make_chunk_fn(setup, weights, g_tx, d_tx)
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
  optimizers = tuple(scale_step.make_optimizer(lr, config.b1, config.b2, config.lr_milestone, config.lr_gamma, steps)
                     for lr, steps in ((config.lr_g, config.g_steps), (config.lr_d, config.d_steps)))
  records, output_key = [], jax.random.fold_in(key, _OUTPUT_TAG)
  previous: list[scale_step.ScaleState] = []

  def scale_stage(n: int) -> dict:
    setup = _build_setup(config, n, sizes, domains)
    state, record = fit_scale(config, workdir, setup, scale_step.scale_constants(setup, reals, pyramids),
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
