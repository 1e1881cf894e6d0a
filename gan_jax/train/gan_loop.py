"""The GAN training loop behind `experiments.train_gan`.

Puts the training split on the devices once (`DeviceDataset`), then feeds global
batches chosen by `gan_jax.data.sampler` (a pure function of seed and step), so a
restored run sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from gan_jax import augment
from gan_jax import checkpoint
from gan_jax import data
from gan_jax.data import device_dataset
from gan_jax import images
from gan_jax import losses
from gan_jax import metric_writer
from gan_jax import models
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import progress
from gan_jax import workdir as workdir_lib
from gan_jax.train import gan_step

NONFINITE_POLICIES = ("error", "skip")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError with the bad value and the allowed ones for malformed configs."""
  if config.model not in models.GAN_MODELS:
    raise ValueError(f"Unknown model '{config.model}'; choose one of: {', '.join(models.GAN_MODELS)}")
  losses.get_adversarial_losses(config.loss)
  data.get_dataset_info(config.dataset)
  if config.on_nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f"Unknown on_nonfinite '{config.on_nonfinite}'; choose one of: {', '.join(NONFINITE_POLICIES)}")
  for field in ("batch_size", "num_steps", "d_steps", "log_every", "checkpoint_every", "sample_every"):
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field} must be a positive integer, got {config[field]}")
  if not 0.0 <= config.g_ema_decay < 1.0:
    raise ValueError(f"config.g_ema_decay must lie in [0, 1) (0 disables the average), got {config.g_ema_decay}")
  augment.parse_policy(config.augment)


def build_gan(config: ml_collections.ConfigDict, info) -> models.GAN:
  return models.build_gan(config.model, image_shape=info.image_shape, num_classes=info.num_classes,
                          z_dim=config.z_dim or None, width=config.width, conditioning=config.conditioning,
                          upsample_impl=config.upsample_impl, spectral_norm=config.spectral_norm)


def build_optimizers(config: ml_collections.ConfigDict):
  return (gan_step.make_optimizer(config.lr_g, config.b1, config.b2),
          gan_step.make_optimizer(config.lr_d, config.b1, config.b2))


def build_step_config(config: ml_collections.ConfigDict) -> gan_step.StepConfig:
  return gan_step.StepConfig(loss=config.loss, d_steps=config.d_steps, gp_weight=config.gp_weight,
                             aux_weight=config.aux_weight, g_ema_decay=config.g_ema_decay,
                             reuse_fakes=config.reuse_fakes, augment=config.augment)


def init_state_fn(config: ml_collections.ConfigDict, gan: models.GAN, g_tx, d_tx, image_shape):
  """`init(key) -> GANTrainState` for this config (with the generator average when it keeps one)."""
  return lambda key: gan_step.init_train_state(gan, g_tx, d_tx, key, image_shape, g_ema=config.g_ema_decay > 0)


def load_train_arrays(config: ml_collections.ConfigDict, idx_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """The (optionally imbalanced) training split: uint8 images [N, H, W, C] and int32 labels."""
  images, labels = data.load_arrays(config.dataset, "train", idx_dir=idx_dir)
  if config.imbalance not in ("", "none"):
    info = data.get_dataset_info(config.dataset)
    counts = data.profile_counts(config.imbalance, data.class_counts(labels, info.num_classes),
                                 **data.imbalance.params_from_config(config))
    keep = data.make_imbalanced(labels, counts, config.seed, num_classes=info.num_classes)
    images, labels = images[keep], labels[keep]
  train_classes = parse_train_classes(config.train_classes, data.get_dataset_info(config.dataset))
  if train_classes is not None:
    keep = np.isin(labels, train_classes)
    images, labels = images[keep], labels[keep]
  if config.class_balanced:
    rows = data.imbalance.balance_by_repetition(labels, config.seed)
    images, labels = images[rows], labels[rows]
  return images, labels


def parse_train_classes(value, info) -> list[int] | None:
  """config.train_classes ('' = every class, else e.g. '3' or '3,5') as a list of class indices."""
  text = str(value).strip("()[] ")
  if not text:
    return None
  try:
    classes = [int(c) for c in text.split(",") if c.strip()]
  except ValueError as e:
    raise ValueError(f"config.train_classes must be '' or comma-separated class indices, got {value!r}") from e
  bad = [c for c in classes if not 0 <= c < info.num_classes]
  if bad or not classes:
    raise ValueError(f"config.train_classes must lie in [0, {info.num_classes}), got {value!r}")
  return classes


def load_generator(config: ml_collections.ConfigDict, workdir: str) -> Callable[[jax.Array, np.ndarray], np.ndarray]:
  """The generator of the finished run `train_gan(config, workdir)` as `sample(key, labels) -> uint8 images`.

  Args:
    config: the run's config.
    workdir: the run folder; its latest checkpoint is restored.

  Returns:
    A function of a PRNG key and int labels [N] (ignored by unconditional
    models) returning uint8 images [N, H, W, C] in eval mode (BatchNorm
    running statistics), quantised as the real images are.

  Raises:
    FileNotFoundError: the workdir has no checkpoint.
  """
  info = data.get_dataset_info(config.dataset)
  gan = build_gan(config, info)
  g_tx, d_tx = build_optimizers(config)
  template = jax.jit(init_state_fn(config, gan, g_tx, d_tx, info.image_shape))(jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  try:
    state = ckpt.restore(template)
  finally:
    ckpt.close()

  @jax.jit
  def sample_batch(key, labels):
    z = jax.random.normal(key, (labels.shape[0], gan.z_dim))
    return gan_step.generate(gan, gan_step.sampling_params(state), state.g_batch_stats, z, labels,
                             train=False)[0]

  def sample(key: jax.Array, labels: np.ndarray, batch_size: int = 500) -> np.ndarray:
    labels = np.asarray(labels, np.int32)
    out = []
    for index, start in enumerate(range(0, len(labels), batch_size)):
      chunk = labels[start:start + batch_size]
      padded = np.resize(chunk, batch_size)  # one compiled shape for every chunk
      fake = sample_batch(jax.random.fold_in(key, index), padded)
      out.append(images.to_uint8(np.asarray(jax.device_get(fake))[:len(chunk)], gan.output_range))
    return np.concatenate(out) if out else np.zeros((0,) + tuple(info.image_shape), np.uint8)

  return sample


def step_batches(dataset: device_dataset.DeviceDataset, step: int, config: ml_collections.ConfigDict) -> dict:
  """The `d_steps` real minibatches of train step `step`, sharded: [d_steps, B, ...]."""
  first = step * config.d_steps
  return dataset.batches(range(first, first + config.d_steps), config.batch_size, config.seed)


def fixed_sample_inputs(gan: models.GAN, seed: int) -> tuple[jax.Array, jax.Array, int, int]:
  """Noise and labels reused for every sample grid; one row per class for conditional models."""
  rows, cols, labels = images.sample_grid(gan.conditional, gan.num_classes)
  z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED), (rows * cols, gan.z_dim))
  return z, jnp.asarray(labels), rows, cols


class NonFiniteError(RuntimeError):
  """A loss or gradient became NaN/Inf and the config says to stop."""


def check_health(state: gan_step.GANTrainState, metric_names, on_nonfinite: str, last_good: int | None,
                 ckpt_dir: str) -> int:
  """Returns the number of skipped non-finite steps; raises NonFiniteError in 'error' mode."""
  health = jax.device_get(state.health)
  count = int(health["nonfinite_steps"])
  if count and on_nonfinite == "error":
    bad = ", ".join(gan_step.decode_mask(health["first_bad_mask"], metric_names))
    where = f"step {last_good} in {ckpt_dir}" if last_good is not None else "none (no checkpoint yet)"
    raise NonFiniteError(f"Non-finite {bad} at step {int(health['first_bad_step'])}; the update was not applied. "
                         f"Last good checkpoint: {where}. Lower the learning rate, or pass "
                         f"--config.on_nonfinite=skip to skip such updates.")
  return count


def train_gan(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
              overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes) a GAN in `workdir` until `config.num_steps`.

  Args:
    config: a GAN config (see experiments/configs).
    workdir: run folder: config.json, metrics.jsonl, tensorboard/, samples/, checkpoints/.
    idx_dir: folder with IDX files for the offline data source (None: TFDS).
    overwrite: discard an earlier run with a different config in `workdir`.

  Returns:
    The last logged metrics record, plus "stopped_by" when a signal ended the run early.
  """
  validate_config(config)
  info = data.get_dataset_info(config.dataset)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite)

  gan = build_gan(config, info)
  g_tx, d_tx = build_optimizers(config)
  dataset = device_dataset.DeviceDataset(*load_train_arrays(config, idx_dir), mesh, gan.output_range)
  init = jax.jit(init_state_fn(config, gan, g_tx, d_tx, info.image_shape), out_shardings=parallel.replicated(mesh))
  state = init(jax.random.PRNGKey(config.seed))
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=config.keep_checkpoints)
  state, restored_step = ckpt.restore_or(state)
  start = int(restored_step or 0)
  if restored_step is not None:
    logging.info("Resuming from step %d", start)

  writer = metric_writer.MetricWriter(workdir, resume_step=start, enabled=is_writer)
  train_step = parallel.data_parallel_jit(
      gan_step.make_train_step(gan, build_step_config(config), g_tx, d_tx), mesh, batch_axis=1)
  sample_z, sample_labels, rows, cols = fixed_sample_inputs(gan, config.seed)
  sampler = jax.jit(lambda s: gan_step.generate(gan, gan_step.sampling_params(s), s.g_batch_stats, sample_z,
                                                sample_labels, train=False)[0])
  tracker = progress.Progress(config.num_steps, start, name=config.model)
  images_per_step = config.batch_size * config.d_steps
  last_good, metric_names = restored_step, None
  last_record: dict[str, Any] = {}

  def save(done: int) -> None:
    nonlocal last_good
    if metric_names is not None:
      check_health(state, metric_names, config.on_nonfinite, last_good, ckpt_dir)
    ckpt.save(done, state)
    last_good = done

  try:
    with preemption.StopSignal() as stop:
      for step in range(start, config.num_steps):
        state, metrics = train_step(state, step_batches(dataset, step, config))
        done = step + 1
        is_last = done == config.num_steps
        if metric_names is None:
          metric_names = [k for k in metrics if k != "nonfinite"]
        if done % config.log_every == 0 or is_last:
          scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
          scalars["nonfinite_skips"] = check_health(state, metric_names, config.on_nonfinite, last_good, ckpt_dir)
          scalars["images_per_sec"] = tracker.rate(done) * images_per_step
          writer.write(done, scalars)
          last_record = {"step": done, **scalars}
          tracker.report(done, f"d_loss={scalars['d_loss']:.4f} g_loss={scalars['g_loss']:.4f} "
                               f"{scalars['images_per_sec']:.0f} img/s")
        if is_writer and (done % config.sample_every == 0 or is_last):
          images.save_grid(os.path.join(workdir, "samples", f"step_{done:08d}.png"),
                           np.asarray(jax.device_get(sampler(state))), rows, cols, gan.output_range)
        if done % config.checkpoint_every == 0 or is_last:
          save(done)
        if not is_last and stop.should_stop():
          save(done)
          ckpt.wait()
          logging.warning("Stopped by %s at step %d; checkpoint saved in %s. Rerun the same command to resume.",
                          stop.received or "a signal on another process", done, ckpt_dir)
          last_record = {**last_record, "stopped_by": stop.received or "remote", "stopped_at": done}
          break
  finally:
    # Also on errors: a pending async save must finish (or its thread dies at exit).
    ckpt.wait()
    ckpt.close()
    writer.close()

  if is_writer and "stopped_by" not in last_record:
    records = metric_writer.read_metrics(workdir)
    last_record = last_record or (records[-1] if records else {})
    images.plot_curves(os.path.join(workdir, "loss_curves.png"), records,
                       ("d_loss", "g_loss", "d_real", "d_fake"), title=f"{config.model} on {config.dataset}")
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(last_record, f, indent=2)
  return last_record
