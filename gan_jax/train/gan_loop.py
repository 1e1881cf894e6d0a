"""GAN training: `fit_gan` trains on the arrays it is handed; `train_gan` is the config wrapper of the entrypoint.

`fit_gan` puts the images on the devices once (`DeviceDataset`) and feeds global
batches chosen by `gan_jax.data.batch_order` (a pure function of seed and step),
so a restored run sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import ada
from gan_jax import augment
from gan_jax import batching
from gan_jax import checkpoint
from gan_jax import checks
from gan_jax import fs
from gan_jax import images
from gan_jax import losses
from gan_jax import metric_writer
from gan_jax import models
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.models import layers
from gan_jax.models import progan
from gan_jax.models import progan_gan
from gan_jax.models.progan_gan import PhaseSchedule
from gan_jax.data import device_dataset
from gan_jax.data import imbalance
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.train import gan_step
from gan_jax.train import nonfinite
from gan_jax.train import loop

POSITIVE_FIELDS = ("batch_size", "num_steps", "d_steps", "log_every", "checkpoint_every", "sample_every",
                   "keep_checkpoints", "mapping_layers", "r1_interval", "ada_interval", "ada_kimg")
# StyleGAN2's fields (mapping network, style mixing, truncation) and the regularisers any family may use
# (lazy R1, adaptive augmentation), at the values that leave a run without them unchanged.
STYLE_DEFAULTS = {"mapping_layers": 2, "style_mixing_prob": 0.9, "truncation_psi": 1.0, "r1_gamma": 0.0,
                  "r1_interval": 16, "ada_target": 0.0, "ada_interval": 4, "ada_kimg": 500,
                  "ada_policy": ada.DEFAULT_POLICY}
# ProGAN's growth schedule (thousands of real images per fade-in and per stable part of a phase, as in
# Karras et al., 2018) and drift term; other families ignore them.
PROGAN_DEFAULTS = {"fade_kimg": 800.0, "stable_kimg": 800.0, "drift_weight": 0.0}
# The fields of a standalone run that choose its data; a driver that hands fit_gan its arrays owns them.
DATA_FIELDS = ("dataset", "seed", "imbalance", "imbalance_rho", "imbalance_n_max", "imbalance_minority_classes",
               "imbalance_fraction", "train_classes", *sources.SOURCE_DEFAULTS)
# GAN run folders recorded by earlier versions: fields added since (with the value that computes what
# such a run computed) and the data fields that runs driven by the imbalance benchmark recorded.
MIGRATIONS = workdir_lib.Migrations(
    added={"train_classes": "", "g_ema_decay": 0.0, "spectral_norm": False, "reuse_fakes": False,
           "class_balanced": False, "augment": "", **STYLE_DEFAULTS, **PROGAN_DEFAULTS, **sources.SOURCE_DEFAULTS},
    retired=DATA_FIELDS)


def build_gan(config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
              stage: int | None = None) -> models.GAN:
  """The config's GAN (for ProGAN, the growth phase `stage`; None: the last)."""
  return models.build_gan(config.model, image_shape=tuple(image_shape), num_classes=num_classes,
                          z_dim=config.z_dim or None, width=config.width, conditioning=config.conditioning,
                          upsample_impl=config.upsample_impl, spectral_norm=config.spectral_norm,
                          mapping_layers=config.mapping_layers, style_mixing_prob=config.style_mixing_prob,
                          truncation_psi=config.truncation_psi, stage=stage)


def phase_schedule(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> PhaseSchedule | None:
  """ProGAN's growth phases in steps (a step shows batch_size * d_steps reals); None for other families."""
  if models.get_family(config.model).backbone != "progan":
    return None
  images_per_step = config.batch_size * config.d_steps
  steps = lambda kimg: max(1, math.ceil(kimg * 1000 / images_per_step - 1e-9))
  return PhaseSchedule(progan_gan.num_stages(image_shape[0]), steps(config.stable_kimg), steps(config.fade_kimg))


def validate_training(config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
                      num_devices: int, prefix: str = "") -> None:
  """Checks every training field (model, loss, schedule, options) without touching data or devices."""
  checks.one_of(config.model, models.GAN_MODELS, prefix + "model")
  checks.one_of(config.loss, sorted(losses.ADVERSARIAL_LOSSES), prefix + "loss")
  checks.one_of(config.on_nonfinite, nonfinite.POLICIES, prefix + "on_nonfinite")
  checks.all_positive(config, POSITIVE_FIELDS, prefix)
  checks.in_range(config.g_ema_decay, prefix + "g_ema_decay", 0.0, 1.0, high_open=True)
  for field in ("lr_g", "lr_d"):
    checks.positive_number(config[field], prefix + field)
  augment.parse_policy(config.augment)
  checks.in_range(config.style_mixing_prob, prefix + "style_mixing_prob", 0.0, 1.0)
  checks.in_range(config.truncation_psi, prefix + "truncation_psi", 0.0, 1.0)
  checks.non_negative(config.r1_gamma, prefix + "r1_gamma")
  checks.non_negative(config.drift_weight, prefix + "drift_weight")
  for field in ("fade_kimg", "stable_kimg"):
    checks.positive_number(config[field], prefix + field)
  checks.in_range(config.ada_target, prefix + "ada_target", 0.0, 1.0, high_open=True)
  if config.ada_target > 0:
    ada.parse_policy(config.ada_policy)
  build_gan(config, image_shape, num_classes)  # conditioning, image size, spectral norm
  if config.batch_size % num_devices:
    raise ValueError(f"{prefix}batch_size={config.batch_size} is not divisible by the number of devices "
                     f"({num_devices}); use a multiple of {num_devices}")


def validate_config(config: ml_collections.ConfigDict) -> sources.DatasetInfo:
  """Checks a standalone GAN config (data fields too); returns the data set's info."""
  checks.one_of(config.model, models.GAN_MODELS, "model")
  checks.one_of(config.loss, sorted(losses.ADVERSARIAL_LOSSES), "loss")
  info = sources.get_dataset_info(sources.DataSource.from_config(config))
  parse_train_classes(config.train_classes, info.num_classes)
  validate_training(config, info.image_shape, info.num_classes, len(parallel.mesh_devices()))
  return info


@dataclasses.dataclass(frozen=True)
class GANPrograms:
  """The compiled pieces of one GAN architecture: `init(key)`, `train_step(state, batches)` and
  `render(state, z, labels)` (eval-mode images); a progressive GAN has one step and one renderer
  per growth phase (`step_at`, `render_at`), compiled when the phase is first reached."""
  gan: models.GAN
  init: Callable
  train_step: Callable
  render: Callable
  schedule: PhaseSchedule | None = None
  phases: tuple[tuple[Callable, Callable], ...] = ()

  def stage_at(self, step: int) -> int:
    return self.schedule.stage_at(step) if self.schedule else 0

  def step_at(self, step: int) -> Callable:
    """The train step that takes the state from `step` to `step + 1`."""
    return self.phases[self.stage_at(step)][0] if self.schedule else self.train_step

  def render_at(self, done: int) -> Callable:
    """The renderer of a state after `done` steps (the phase that made it, at its fade)."""
    return self.phases[self.stage_at(max(done - 1, 0))][1] if self.schedule else self.render


_PROGRAMS: dict[tuple, GANPrograms] = {}
SCHEDULE_FIELDS = ("num_steps", "log_every", "checkpoint_every", "sample_every", "keep_checkpoints", "on_nonfinite")
_MAX_PROGRAMS = 8


def build_programs(config: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
                   mesh) -> GANPrograms:
  """The programs of a config, built once per process: runs of one architecture (the per-class
  GANs of a benchmark, a resumed run) reuse the traced and compiled functions."""
  # The schedule fields do not change the programs: a rerun with more steps reuses them.
  fields = {k: v for k, v in workdir_lib.config_to_dict(config).items() if k not in SCHEDULE_FIELDS}
  key = (json.dumps(fields, sort_keys=True), tuple(image_shape), num_classes, mesh)
  if key not in _PROGRAMS:
    if len(_PROGRAMS) >= _MAX_PROGRAMS:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    gan = build_gan(config, image_shape, num_classes)
    g_tx, d_tx = build_optimizers(config)
    init = jax.jit(init_state_fn(config, gan, g_tx, d_tx, tuple(image_shape)), out_shardings=parallel.replicated(mesh))
    step_config = build_step_config(config)
    make_step = lambda g, cfg: parallel.data_parallel_jit(gan_step.make_train_step(g, cfg, g_tx, d_tx), mesh,
                                                          batch_axis=1)
    schedule = phase_schedule(config, image_shape)
    phases = ()
    if schedule is not None:
      # Every phase's networks read the full parameter tree (made by the last phase): parameters of
      # blocks still to come are unused, their gradients zero, and Adam leaves them untouched.
      phase_gans = [build_gan(config, image_shape, num_classes, stage) for stage in range(schedule.num_stages)]
      phases = tuple((make_step(g, _fade_config(step_config, schedule, g.stage)),
                      _renderer(g, schedule)) for g in phase_gans)
    _PROGRAMS[key] = GANPrograms(gan, init, make_step(gan, step_config), _renderer(gan), schedule, phases)
  return _PROGRAMS[key]


def _fade_config(step_config: gan_step.StepConfig, schedule: PhaseSchedule, stage: int) -> gan_step.StepConfig:
  start, steps = schedule.fade(stage)
  return dataclasses.replace(step_config, fade_start=start, fade_steps=steps)


def at_fade(gan: models.GAN, schedule: PhaseSchedule, done) -> models.GAN:
  """A progressive GAN's phase `gan` at the fade coefficient of a state after `done` steps."""
  start, steps = schedule.fade(gan.stage)
  return gan.with_alpha(progan.fade_alpha(done - start, steps)) if steps else gan


def _renderer(gan: models.GAN, schedule: PhaseSchedule | None = None) -> Callable:
  """`render(state, z, labels)`: eval-mode images; a fading phase draws at the alpha of the state's step."""

  def render(state, z, labels):
    faded = gan if schedule is None else at_fade(gan, schedule, state.step)
    return gan_step.generate(faded, gan_step.sampling_params(state), state.g_batch_stats, z, labels, train=False)[0]

  return jax.jit(render)


def build_optimizers(config: ml_collections.ConfigDict):
  """Adam for G and D; with lazy R1, D's learning rate and betas are rescaled by interval / (interval + 1),
  as StyleGAN2 does so that the regularised and plain steps together move D as one plain step would."""
  d_ratio = config.r1_interval / (config.r1_interval + 1) if config.r1_gamma > 0 else 1.0
  return (gan_step.make_optimizer(config.lr_g, config.b1, config.b2),
          gan_step.make_optimizer(config.lr_d * d_ratio, config.b1**d_ratio, config.b2**d_ratio))


def build_step_config(config: ml_collections.ConfigDict) -> gan_step.StepConfig:
  return gan_step.StepConfig(loss=config.loss, d_steps=config.d_steps, gp_weight=config.gp_weight,
                             aux_weight=config.aux_weight, g_ema_decay=config.g_ema_decay,
                             reuse_fakes=config.reuse_fakes, augment=config.augment, r1_gamma=config.r1_gamma,
                             r1_interval=config.r1_interval, ada_target=config.ada_target,
                             ada_interval=config.ada_interval, ada_kimg=config.ada_kimg, ada_policy=config.ada_policy,
                             drift_weight=config.drift_weight)


def init_state_fn(config: ml_collections.ConfigDict, gan: models.GAN, g_tx, d_tx, image_shape):
  """`init(key) -> GANTrainState` for this config (with the generator average when it keeps one)."""
  return lambda key: gan_step.init_train_state(gan, g_tx, d_tx, key, image_shape, g_ema=config.g_ema_decay > 0,
                                               ada_state=config.ada_target > 0)


def parse_train_classes(value, num_classes: int) -> list[int] | None:
  """config.train_classes ('' = every class, else e.g. '3' or '3,5') as a list of class indices."""
  classes = checks.parse_int_list(value, "train_classes")
  if not classes:
    return None
  if any(not 0 <= c < num_classes for c in classes):
    raise ValueError(f"config.train_classes must lie in [0, {num_classes}), got {value!r}")
  return classes


def load_train_arrays(config: ml_collections.ConfigDict, idx_dir: str | None,
                      cache_dir: str | None = None) -> splits.Arrays:
  """A standalone run's training set: the (optionally imbalanced) train split, restricted to train_classes.

  `cache_dir` keeps an image folder's decoded arrays (see `sources.load_arrays`).
  """
  spec = imbalance.ImbalanceSpec.from_fields(config.imbalance, config.imbalance_rho, config.imbalance_n_max,
                                             config.imbalance_minority_classes, config.imbalance_fraction)
  data = splits.load_splits(sources.DataSource.from_config(config), imbalance_spec=spec, seed=config.seed,
                            idx_dir=idx_dir, with_test=False, cache_dir=cache_dir)
  images_, labels = data.train
  train_classes = parse_train_classes(config.train_classes, data.num_classes)
  if train_classes is not None:
    keep = np.isin(labels, train_classes)
    images_, labels = images_[keep], labels[keep]
  return images_, labels


def class_balanced(images_: np.ndarray, labels: np.ndarray, seed: int) -> splits.Arrays:
  """The rarer classes' rows repeated until every class has as many as the largest (see balance_by_repetition)."""
  rows = imbalance.balance_by_repetition(labels, seed)
  return images_[rows], labels[rows]


def fixed_sample_inputs(gan: models.GAN, seed: int) -> tuple[jax.Array, jax.Array, int, int]:
  """Noise and labels reused for every sample grid; one row per class for conditional models."""
  rows, cols, labels = images.sample_grid(gan.conditional, gan.num_classes)
  z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED), (rows * cols, gan.z_dim))
  return z, jnp.asarray(labels), rows, cols


def save_sample_grid(workdir: str, done: int, grid: jax.Array, rows: int, cols: int,
                     output_range: tuple[float, float]) -> None:
  """A run's sample grid after `done` steps: samples/step_<done>.png."""
  images.save_grid(fs.join(workdir, "samples", f"step_{done:08d}.png"), np.asarray(jax.device_get(grid)),
                   rows, cols, output_range)


def fit_gan(config: ml_collections.ConfigDict, images_: np.ndarray, labels: np.ndarray, workdir: str, *,
            num_classes: int, seed: int, overwrite: bool = False, name: str | None = None,
            info: sources.DatasetInfo | None = None) -> dict[str, Any]:
  """Trains (or resumes) a GAN on the given arrays in `workdir` until `config.num_steps`.

  Args:
    config: the GAN's training fields (model, loss, schedule, options; see `validate_training`).
    images_: uint8 training images [N, H, W, C].
    labels: int labels [N] (ignored by unconditional models).
    workdir: run folder: config.json, metrics.jsonl, tensorboard/, samples/, checkpoints/.
    num_classes: classes of the data set (the conditional models' label range).
    seed: initialisation, noise and batch order.
    overwrite: discard an earlier run with a different config in `workdir`.
    name: label of the progress lines (default: the model name).
    info: the data set's facts, recorded as `data/classes.json` so that samples can be named by class.

  Returns:
    The last logged metrics record, plus 'stopped_by' and 'stopped_at' when a signal ended the run early.
  """
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite, migrations=MIGRATIONS)
    if info is not None:
      splits.write_class_names(workdir, info)
  if config.class_balanced:
    images_, labels = class_balanced(images_, labels, seed)
  image_shape = tuple(images_.shape[1:])
  programs = build_programs(config, image_shape, num_classes, mesh)
  gan = programs.gan
  dataset = device_dataset.DeviceDataset(images_, labels, mesh, gan.output_range)
  init = programs.init
  metric_names: list[str] = []

  def step_fn(state, step):
    first = step * config.d_steps
    batches = dataset.batches(range(first, first + config.d_steps), config.batch_size, seed)
    state, metrics = programs.step_at(step)(state, batches)
    metric_names[:] = metric_names or [k for k in metrics if k != "nonfinite"]
    return state, metrics

  sample_z, sample_labels, rows, cols = fixed_sample_inputs(gan, seed)

  def save_samples(state, done):
    save_sample_grid(workdir, done, programs.render_at(done)(state, sample_z, sample_labels), rows, cols,
                     gan.output_range)

  result = loop.train(
      init(jax.random.PRNGKey(seed)), step_fn, num_steps=config.num_steps, name=name or config.model,
      log_every=config.log_every, checkpoint_dir=fs.join(workdir, "checkpoints"),
      checkpoint_every=config.checkpoint_every, keep_checkpoints=config.keep_checkpoints, metrics_dir=workdir,
      images_per_step=config.batch_size * config.d_steps,
      describe=lambda s: f"d_loss={s['d_loss']:.4f} g_loss={s['g_loss']:.4f} {s['images_per_sec']:.0f} img/s",
      check=nonfinite.health_check(config.on_nonfinite, metric_names), nonfinite_hint=nonfinite.HINT,
      periodic=[loop.Periodic(config.sample_every, save_samples)], is_writer=is_writer)
  if result.stopped:
    return {**result.last_record, "stopped_by": result.stopped_by, "stopped_at": result.stopped_at}
  if is_writer:
    images.plot_curves(fs.join(workdir, "loss_curves.png"), metric_writer.read_metrics(workdir),
                       ("d_loss", "g_loss", "d_real", "d_fake"), title=f"{config.model}")
    fs.write_json(fs.join(workdir, "final_metrics.json"), result.last_record)
  return result.last_record


def train_gan(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
              overwrite: bool = False) -> dict[str, Any]:
  """The train_gan entrypoint: checks the config, loads its data, then `fit_gan`.

  Args:
    config: a standalone GAN config (data and training fields).
    workdir: run folder (see `fit_gan`).
    idx_dir: folder with IDX files for the offline data source (None: TFDS).
    overwrite: discard an earlier run with a different config in `workdir`.

  Returns:
    What `fit_gan` returns.
  """
  info = validate_config(config)
  images_, labels = load_train_arrays(config, idx_dir, cache_dir=splits.data_dir(workdir))
  return fit_gan(config, images_, labels, workdir, num_classes=info.num_classes, seed=config.seed,
                 overwrite=overwrite, info=info)


def load_generator(config: ml_collections.ConfigDict, workdir: str, *, image_shape: Sequence[int],
                   num_classes: int) -> Callable[..., np.ndarray]:
  """The generator of a finished `fit_gan` run as `sample(key, labels) -> uint8 images`.

  Args:
    config: the run's training fields.
    workdir: the run folder; its latest checkpoint is restored.
    image_shape: (H, W, C) of the training images.
    num_classes: the run's `num_classes`.

  Returns:
    `sample(key, labels, batch_size=500, truncation=0.0)`: a PRNG key and int labels [N]
    (ignored by unconditional models) -> uint8 images [N, H, W, C], in eval mode (BatchNorm
    running statistics), quantised as the real images are; chunks of `batch_size` compile
    once. `truncation` > 0 draws z from N(0, 1) truncated to [-truncation, truncation].

  Raises:
    FileNotFoundError: the workdir has no checkpoint.
  """
  gan = build_gan(config, image_shape, num_classes)
  g_tx, d_tx = build_optimizers(config)
  template = checkpoint.abstract_state(init_state_fn(config, gan, g_tx, d_tx, tuple(image_shape)),
                                      jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(fs.join(workdir, "checkpoints"), async_save=False)
  try:
    state = ckpt.restore(template)
  finally:
    ckpt.close()

  # The weights are arguments, not constants of the program: runs of one architecture (the
  # per-class GANs of a benchmark) share one compiled sampler.
  params, batch_stats = gan_step.sampling_params(state), state.g_batch_stats
  schedule = phase_schedule(config, image_shape)
  if schedule is not None:  # a progressive GAN draws with the phase (and fade) its training reached
    done = int(jax.device_get(state.step))
    stage = schedule.stage_at(max(done - 1, 0))
    gan = at_fade(build_gan(config, image_shape, num_classes, stage), schedule, float(done))

  @functools.partial(jax.jit, static_argnums=4)
  def sample_batch(params, batch_stats, key, labels, truncation):
    z = layers.latent_noise(key, (labels.shape[0], gan.z_dim), truncation)
    return gan_step.generate(gan, params, batch_stats, z, labels, train=False)[0]

  def sample(key: jax.Array, labels: np.ndarray, batch_size: int = 500, truncation: float = 0.0) -> np.ndarray:
    labels = np.asarray(labels, np.int32)
    if not len(labels):
      return np.zeros((0,) + tuple(image_shape), np.uint8)
    fake = batching.map_chunks(
        lambda index, rows: sample_batch(params, batch_stats, jax.random.fold_in(key, index), labels[rows],
                                         float(truncation)),
        len(labels), batch_size)
    return images.to_uint8(fake, gan.output_range)

  return sample
