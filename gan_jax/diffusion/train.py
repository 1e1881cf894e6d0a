"""Diffusion training on arrays it is handed (`fit_diffusion`), sampling from a finished run (`load_sampler`).

`ldm` trains the first-stage autoencoder, measures the latent scale on the
training images, then the class-conditioned denoiser on scaled latents of the
frozen first stage; `ddpm` trains the same denoiser on pixels. Both stages run
in the one loop skeleton (`gan_jax.train.loop`): checkpoints that resume
exactly, metrics, the non-finite guard. Batches are a pure function of (seed,
step) on device-resident data.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import linen as nn
from jax.experimental import multihost_utils

from gan_jax import batching
from gan_jax import checkpoint
from gan_jax import checks
from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.data import device_dataset
from gan_jax.diffusion import sampling
from gan_jax.diffusion import schedule as schedule_lib
from gan_jax.diffusion import steps
from gan_jax.models import kl_autoencoder
from gan_jax.models import translation
from gan_jax.models import unet
from gan_jax.train import loop

MODELS = ("ldm", "ddpm")
OUTPUT_RANGE = (-1.0, 1.0)
POSITIVE_FIELDS = ("batch_size", "num_steps", "log_every", "checkpoint_every", "keep_checkpoints", "diffusion_steps",
                   "sample_steps", "heads", "context_dim", "blocks_per_level", "ae_batch_size", "ae_steps",
                   "latent_channels", "ae_disc_width", "sample_batch_size")
FIRST_STAGE = "first_stage"
SCALE_FILE = "latent_scale.json"
DENOISER_LATENTS = "denoiser_latents.json"  # the first-stage step whose latents the denoiser learns
# What a run leaves in its folder: an earlier run's, removed when --overwrite replaces it.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "tensorboard", "samples", "results.json", FIRST_STAGE, DENOISER_LATENTS)
# Fields a rerun may change and still resume (more steps continue both stages).
RESUMABLE_FIELDS = (*workdir_lib.RESUMABLE_FIELDS, "ae_steps", "guidance", "sample_steps", "sampler", "eta",
                    "sample_batch_size")
NONFINITE_HINT = "Lower --config.learning_rate (or --config.ae_learning_rate)."
# The first stage's optional patch discriminator: runs recorded before these fields trained without one.
# Runs recorded before sample_batch_size drew in chunks of 500.
MIGRATIONS = workdir_lib.Migrations(added=dict(ae_disc_weight=0.0, ae_disc_start=1_000, ae_disc_width=32,
                                               ae_disc_layers=2, ae_disc_loss="hinge", sample_batch_size=500))


@dataclasses.dataclass(frozen=True)
class Programs:
  """The models, schedule, optimisers and jitted steps of one config on one mesh."""
  model: str
  image_shape: tuple[int, int, int]
  data_shape: tuple[int, int, int]  # what the denoiser sees: the latent or the image
  num_classes: int
  first_stage: kl_autoencoder.KLAutoencoder | None
  denoiser: unet.ConditionalDenoiser
  schedule: schedule_lib.Schedule
  ae_tx: optax.GradientTransformation
  tx: optax.GradientTransformation
  denoiser_cfg: steps.DenoiserConfig
  first_stage_cfg: steps.FirstStageConfig
  critic: translation.PatchDiscriminator | None  # the first stage's patch discriminator (ae_disc_weight > 0)
  critic_tx: optax.GradientTransformation | None


def make_denoiser(config: ml_collections.ConfigDict, num_classes: int, out_channels: int) -> unet.ConditionalDenoiser:
  """The config's class-conditioned U-Net (every level below the first cross-attends to the class tokens)."""
  widths = tuple(config.widths)
  for width in widths:
    if width % config.heads:
      raise ValueError(f"config.widths {widths} must be multiples of config.heads={config.heads}")
  return unet.ConditionalDenoiser(num_classes=num_classes, out_channels=out_channels, widths=widths,
                                  blocks_per_level=config.blocks_per_level, heads=config.heads,
                                  context_dim=config.context_dim, cross_attention_levels=tuple(range(1, len(widths))),
                                  dropout_rate=config.dropout_rate)


def denoiser_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The denoiser's AdamW (no weight decay: the latent diffusion recipe's)."""
  return optax.adamw(config.learning_rate, weight_decay=0.0)


def build(config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int) -> Programs:
  """Checks every field and builds the models (nothing is compiled or initialised)."""
  checks.one_of(config.model, MODELS, "model")
  checks.all_positive(config, POSITIVE_FIELDS)
  for field in ("learning_rate", "ae_learning_rate"):
    checks.positive_number(config[field], field)
  image_shape = tuple(int(s) for s in image_shape)
  latent = config.model == "ldm"
  first_stage = (kl_autoencoder.KLAutoencoder(image_shape, config.latent_channels, tuple(config.ae_widths))
                 if latent else None)
  data_shape = kl_autoencoder.latent_shape(image_shape, config.latent_channels) if latent else image_shape
  denoiser = make_denoiser(config, num_classes, data_shape[-1])
  schedule = schedule_lib.make(config.schedule, config.diffusion_steps)
  sampling.timesteps(config.diffusion_steps, config.sample_steps)  # checks sample_steps
  checks.one_of(config.sampler, sampling.SAMPLERS, "sampler")
  first_stage_cfg = steps.FirstStageConfig(config.reconstruction, config.kl_weight, config.ae_disc_weight,
                                           config.ae_disc_start, config.ae_disc_loss)
  critic, critic_tx = None, None
  if latent and first_stage_cfg.adversarial:
    if config.ae_disc_layers not in translation.PATCH_SIZES.values():
      raise ValueError(f"config.ae_disc_layers must be one of {sorted(translation.PATCH_SIZES.values())}, "
                       f"got {config.ae_disc_layers}")
    # Latent diffusion's autoencoders train both players with Adam (0.5, 0.9) at one rate.
    critic = translation.PatchDiscriminator(config.ae_disc_width, config.ae_disc_layers)
    critic_tx = optax.adam(config.ae_learning_rate, b1=0.5, b2=0.9)
  return Programs(config.model, image_shape, data_shape, num_classes, first_stage, denoiser, schedule,
                  optax.adam(config.ae_learning_rate), denoiser_optimizer(config),
                  steps.DenoiserConfig(config.prediction, config.label_dropout, config.ema_decay),
                  first_stage_cfg, critic, critic_tx)


def validate_training(config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
                      num_devices: int, prefix: str = "") -> None:
  try:
    build(config, image_shape, num_classes)
  except ValueError as e:
    raise ValueError(f"{prefix}{e}" if prefix and not str(e).startswith("config.") else str(e)) from None
  for field in ("batch_size", "ae_batch_size"):
    if config[field] % num_devices:
      raise ValueError(f"{prefix}{field}={config[field]} is not divisible by the number of devices ({num_devices})")


def _check(names):
  def check(state, scalars, step):
    del state
    bad = loop.nonfinite_names(scalars or {}, names)
    return {}, (f"Non-finite {', '.join(bad)} at step {step}" if bad else None)
  return check


def _train_stage(state, step_fn, *, num_steps, batch_size, folder, config, name, metric):
  return loop.train(state, step_fn, num_steps=num_steps, name=name, log_every=config.log_every,
                    checkpoint_dir=fs.join(folder, "checkpoints"), checkpoint_every=config.checkpoint_every,
                    keep_checkpoints=config.keep_checkpoints, metrics_dir=folder, images_per_step=batch_size,
                    describe=lambda s: f"{metric}={s[metric]:.4f} {s['images_per_sec']:.0f} img/s",
                    check=_check((metric,)), nonfinite_hint=NONFINITE_HINT)


def _first_stage_init(programs: Programs, seed: int):
  model = programs.first_stage
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
  params = model.init(key, jnp.zeros((1,) + programs.image_shape), key)["params"]
  state = steps.init_state(params, programs.ae_tx, jax.random.fold_in(key, 2))
  if programs.critic is None:
    return state
  critic_params = programs.critic.init(jax.random.fold_in(key, 5), jnp.zeros((1,) + programs.image_shape))["params"]
  return steps.AdversarialTrainState(**vars(state), critic_params=critic_params,
                                     critic_opt_state=programs.critic_tx.init(critic_params))


def init_denoiser_state(denoiser: nn.Module, tx: optax.GradientTransformation, data_shape: tuple[int, ...],
                        key: jax.Array) -> steps.TrainState:
  """A fresh denoiser train state: parameters drawn from `key`, the step's RNG from fold_in(key, 4)."""
  params = denoiser.init(key, jnp.zeros((1,) + tuple(data_shape)), jnp.zeros((1,), jnp.int32),
                         jnp.zeros((1,), jnp.int32))["params"]
  return steps.init_state(params, tx, jax.random.fold_in(key, 4))


def _denoiser_init(programs: Programs, seed: int):
  return init_denoiser_state(programs.denoiser, programs.tx, programs.data_shape,
                             jax.random.fold_in(jax.random.PRNGKey(seed), 3))


def _first_stage_step(programs: Programs, mesh) -> Callable[[int], Callable]:
  """step number -> the jitted first-stage step to run at it (with a critic: its phase, chosen on the host)."""
  cfg = programs.first_stage_cfg
  if not cfg.adversarial:
    plain = parallel.data_parallel_jit(steps.make_first_stage_step(programs.first_stage, programs.ae_tx, cfg), mesh)
    return lambda step: plain
  phases = steps.make_first_stage_phases(programs.first_stage, programs.ae_tx, cfg, programs.critic,
                                         programs.critic_tx)
  jitted = steps.FirstStagePhases(parallel.data_parallel_jit(phases.before_start, mesh),
                                  parallel.data_parallel_jit(phases.adversarial, mesh), phases.start)
  return jitted.at


def _restore(template, folder: str):
  ckpt = checkpoint.Checkpointer(fs.join(folder, "checkpoints"), async_save=False)
  try:
    return ckpt.restore(template)
  finally:
    ckpt.close()


def fit_diffusion(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray, workdir: str, *,
                  num_classes: int, seed: int, overwrite: bool = False, name: str | None = None) -> dict[str, Any]:
  """Trains (or resumes) both stages on uint8 images [N, H, W, C] in `workdir`.

  A rerun with more `ae_steps` continues the first stage; its latents then change, so a
  denoiser trained on the earlier ones starts again (as a run with those steps from the start).

  Returns:
    The denoiser's last metrics record with the latent scale, plus 'stopped_by' when a signal ended the run.
  """
  mesh = parallel.make_mesh()
  programs = build(config, images.shape[1:], num_classes)
  name = name or config.model
  if jax.process_index() == 0:
    prepare_workdir(workdir, config, overwrite)
  dataset = device_dataset.DeviceDataset(images, labels, mesh, OUTPUT_RANGE)
  first_stage, scale = None, None
  if programs.first_stage is not None:
    folder = fs.join(workdir, FIRST_STAGE)
    # The first-stage step whose latents the denoiser so far learned (runs recorded before the
    # denoiser kept it: the step of the latent scale, measured before the denoiser trained).
    denoiser_latents = _denoiser_latents(workdir, folder)
    ae_step = _first_stage_step(programs, mesh)
    result = _train_stage(
        jax.jit(lambda: _first_stage_init(programs, seed), out_shardings=parallel.replicated(mesh))(),
        lambda state, step: ae_step(step)(state, jax.tree.map(lambda x: x[0], dataset.batches(
            [step], config.ae_batch_size, seed))), num_steps=config.ae_steps, batch_size=config.ae_batch_size,
        folder=folder, config=config, name=f"{name} first stage", metric="loss")
    if result.stopped:
      return {**result.last_record, "stopped_by": result.stopped_by}
    ae_params, reached = result.state.params, int(jax.device_get(result.state.step))
    # Before the new scale is kept: a run that dies in between still finds the old denoiser stale.
    _restart_denoiser_if_stale(workdir, denoiser_latents, reached)
    scale = _latent_scale(programs, ae_params, dataset, config, seed, folder, reached)
    first_stage = jax.device_put({"params": ae_params, "scale": jnp.float32(scale)}, parallel.replicated(mesh))
  to_latent = None if first_stage is None else steps.latent_encoder(programs.first_stage)
  step = parallel.data_parallel_jit(steps.make_denoiser_step(programs.denoiser, programs.tx, programs.schedule,
                                                             programs.denoiser_cfg, num_classes, to_latent), mesh,
                                    replicated_args=1)
  result = _train_stage(
      jax.jit(lambda: _denoiser_init(programs, seed), out_shardings=parallel.replicated(mesh))(),
      lambda state, s: step(state, jax.tree.map(lambda x: x[0], dataset.batches([s], config.batch_size, seed)),
                            first_stage),
      num_steps=config.num_steps, batch_size=config.batch_size, folder=workdir, config=config, name=name,
      metric="loss")
  record = {**result.last_record, "latent_scale": scale}
  if result.stopped:
    record["stopped_by"] = result.stopped_by
  return record


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Writes config.json, refusing (or with `overwrite`, discarding) a run of another config: both stages."""
  workdir_lib.prepare(workdir, config, overwrite=overwrite, resumable_fields=RESUMABLE_FIELDS, migrations=MIGRATIONS,
                      outputs=RUN_OUTPUTS)


def _scale_record(folder: str) -> dict:
  path = fs.join(folder, SCALE_FILE)
  return fs.read_json(path) if fs.exists(path) else {}


def _denoiser_latents(workdir: str, folder: str) -> int | None:
  path = fs.join(workdir, DENOISER_LATENTS)
  if fs.exists(path):
    return int(fs.read_json(path)["first_stage_steps"])
  return _scale_record(folder).get("first_stage_steps")


def _restart_denoiser_if_stale(workdir: str, learned: int | None, reached: int) -> None:
  """Discards a denoiser that learned the latents of another first stage (`learned` steps, not `reached`),
  then records the step whose latents the denoiser learns from now on."""
  if jax.process_index() == 0:
    if learned is not None and learned != reached:
      logging.warning("The first stage has trained to step %d, not %d: its latents changed, so the denoiser "
                      "trains again from its start.", reached, learned)
      for name in ("checkpoints", "metrics.jsonl", "tensorboard", "results.json"):
        fs.remove(fs.join(workdir, name))
    fs.write_json(fs.join(workdir, DENOISER_LATENTS), {"first_stage_steps": reached})
  if jax.process_count() > 1:  # every process, whatever it read: no process restores a removed checkpoint
    multihost_utils.sync_global_devices("gan_jax.diffusion.denoiser_latents")


def _latent_scale(programs, ae_params, dataset, config, seed, folder, first_stage_steps: int) -> float:
  """1 / std of the first stage's latent means over 10 batches of training images.

  Cached in a file with the step the first stage reached, so a first stage trained further gets a new scale.
  """
  path = fs.join(folder, SCALE_FILE)
  cached = _scale_record(folder)
  if cached.get("first_stage_steps") == first_stage_steps:
    return float(cached["latent_scale"])
  encode = jax.jit(lambda params, x: programs.first_stage.apply({"params": params}, x,
                                                                method=programs.first_stage.encode)[0])
  means = [encode(ae_params, dataset.batches([i], config.ae_batch_size, seed)["image"][0]) for i in range(10)]
  scale = float(steps.latent_scale(jnp.concatenate(means)))
  if jax.process_index() == 0:
    fs.write_json(path, {"latent_scale": scale, "first_stage_steps": first_stage_steps})
  return scale


def load_sampler(config: ml_collections.ConfigDict, workdir: str, *, image_shape: Sequence[int],
                 num_classes: int) -> Callable[..., np.ndarray]:
  """A finished run as `sample(key, labels, batch_size=None, guidance=None) -> uint8 images` (see `make_sampler`).

  Samples come from the denoiser's EMA parameters with the config's sampler and steps;
  the ldm decodes the final latents with its first stage.
  """
  programs = build(config, image_shape, num_classes)
  state = _restore(checkpoint.abstract_state(lambda: _denoiser_init(programs, 0)), workdir)
  first_stage_params, scale = None, 1.0
  if programs.first_stage is not None:
    folder = fs.join(workdir, FIRST_STAGE)
    first_stage_params = _restore(checkpoint.abstract_state(lambda: _first_stage_init(programs, 0)), folder).params
    scale = float(fs.read_json(fs.join(folder, SCALE_FILE))["latent_scale"])
  return make_sampler(config, programs, state.ema_params, first_stage_params, scale)


def initial_parameters(programs: Programs, seed: int = 0) -> tuple[Any, Any]:
  """(denoiser, first stage or None) parameters as initialised: what sampling costs needs no training."""
  denoiser = jax.jit(lambda: _denoiser_init(programs, seed))().ema_params
  first_stage = jax.jit(lambda: _first_stage_init(programs, seed))().params if programs.first_stage else None
  return denoiser, first_stage


def make_sampler(config: ml_collections.ConfigDict, programs: Programs, params: Any, first_stage_params: Any,
                 scale: float) -> Callable[..., np.ndarray]:
  """`sample(key, labels, batch_size=None, guidance=None) -> uint8 images` from given parameters.

  Labels are drawn in chunks of `batch_size` (None: config.sample_batch_size), the last one
  padded, so the sampler compiles once; a draw depends on the chunk size (its noise is drawn
  per chunk). `guidance` None: config.guidance.

  Args:
    config: the run's config (sampler, sample_steps, eta, prediction, guidance).
    programs: `build(config, ...)`.
    params: the denoiser's parameters.
    first_stage_params: the autoencoder's parameters (ldm), else None.
    scale: the latent scale factor the denoiser was trained with (1.0 on pixels).
  """
  # The first stage is an argument of the compiled programs (not a closed-over constant), so they
  # compile once for a config whatever the autoencoder learned.
  model, first_stage = programs.first_stage, None
  if model is not None:
    first_stage = {"params": first_stage_params, "scale": jnp.float32(scale)}

  def decode_with(first_stage, z):
    return model.apply({"params": first_stage["params"]}, z / first_stage["scale"], method=model.decode)

  @jax.jit
  def reconstruct_with(first_stage, x):  # the first stage alone: images in [-1, 1] -> decoded latent means
    mean = model.apply({"params": first_stage["params"]}, x, method=model.encode)[0]
    return model.apply({"params": first_stage["params"]}, mean, method=model.decode)

  num_classes = programs.num_classes

  @functools.partial(jax.jit, static_argnames=("trajectory",))
  def sample_batch(params, first_stage, key, labels, guidance, trajectory=False):
    model_fn = steps.guided_model(programs.denoiser, params, labels, num_classes, guidance)
    noise_key, sampler_key = jax.random.split(key)
    x_T = jax.random.normal(noise_key, (labels.shape[0],) + programs.data_shape)
    out = sampling.sample(model_fn, programs.schedule, x_T, sampler_key, num_steps=config.sample_steps,
                          sampler=config.sampler, prediction=config.prediction, eta=config.eta,
                          return_trajectory=trajectory)
    if trajectory:
      out, path = out
    images = jnp.clip(out if first_stage is None else decode_with(first_stage, out), -1, 1)
    return (images, path) if trajectory else images

  def sample(key, labels, batch_size: int | None = None, guidance: float | None = None) -> np.ndarray:
    labels = np.asarray(labels, np.int32)
    batch_size = int(config.sample_batch_size if batch_size is None else batch_size)
    g = float(config.guidance if guidance is None else guidance)
    if not len(labels):
      return np.zeros((0,) + programs.image_shape, np.uint8)
    images = batching.map_chunks(lambda index, rows: sample_batch(params, first_stage, jax.random.fold_in(key, index),
                                                                  labels[rows], g), len(labels), batch_size)
    return images_lib.to_uint8(images, OUTPUT_RANGE)

  sample.trajectory = lambda key, labels, guidance: sample_batch(
      params, first_stage, key, jnp.asarray(labels, jnp.int32), float(guidance), trajectory=True)
  sample.decode = None if model is None else functools.partial(decode_with, first_stage)
  sample.reconstruct = None if model is None else functools.partial(reconstruct_with, first_stage)
  return sample
