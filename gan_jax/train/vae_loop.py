"""The autoencoder / VAE training loop behind `experiments.train_vae` and `experiments.anomaly`.

`fit` trains (or resumes) one model on an in-memory data set in a run folder;
batches come from `InMemoryDataset.batch` (a pure function of seed and step), so
a restored run sees exactly the batches of an uninterrupted one. `evaluate`
maps the per-example metrics over a data set. `train_vae` is the experiment:
train on the train split, report test-set figures and write the image grids.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from gan_jax import checkpoint
from gan_jax import data
from gan_jax import images as images_lib
from gan_jax import metric_writer
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import progress
from gan_jax import workdir as workdir_lib
from gan_jax.models import autoencoders
from gan_jax.train import vae_figures
from gan_jax.train import vae_step

POSITIVE_FIELDS = ("batch_size", "num_steps", "latent_dim", "width", "hidden", "log_every", "checkpoint_every",
                   "eval_batch_size", "eval_samples")


class NonFiniteError(RuntimeError):
  """A logged loss became NaN/Inf."""


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the bad value (and the allowed ones) for a malformed config."""
  if config.model not in autoencoders.AUTOENCODER_MODELS:
    raise ValueError(f"Unknown model '{config.model}'; choose one of: {', '.join(autoencoders.AUTOENCODER_MODELS)}")
  data.get_dataset_info(config.dataset)
  build_step_config(config)
  for field in POSITIVE_FIELDS:
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field} must be a positive integer, got {config[field]}")
  if config.learning_rate <= 0 or config.d_learning_rate <= 0:
    raise ValueError(f"learning rates must be positive, got {config.learning_rate}, {config.d_learning_rate}")
  for field in ("beta", "iwae_samples", "eval_examples", "adversarial_weight", "aae_score_weight"):
    if config[field] < 0:
      raise ValueError(f"config.{field} must be non-negative, got {config[field]}")


def build_step_config(config: ml_collections.ConfigDict) -> vae_step.StepConfig:
  return vae_step.StepConfig(likelihood=config.likelihood, gaussian_std=config.gaussian_std, beta=config.beta,
                             binarize=config.binarize, adversarial_weight=config.adversarial_weight,
                             aae_score_weight=config.aae_score_weight)


@dataclasses.dataclass(frozen=True)
class Programs:
  """A model and its jitted functions; built once and reused by every run of one config.

  Attributes:
    model: the autoencoder family.
    cfg: static step settings.
    init: key -> replicated initial train state.
    train_step: data-parallel (state, batch) -> (state, metrics); donates the state.
    metrics_fn: (state, images, labels, key) -> per-example metrics, batch sharded.
  """
  model: autoencoders.ReconstructionModel
  cfg: vae_step.StepConfig
  init: Callable[[jax.Array], vae_step.AETrainState]
  train_step: Callable
  metrics_fn: Callable


def build_programs(config: ml_collections.ConfigDict, mesh) -> Programs:
  """Builds the model, optimizers and jitted functions of `config` on `mesh`."""
  validate_config(config)
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh)
  info = data.get_dataset_info(config.dataset)
  model = autoencoders.build_model(config.model, image_shape=info.image_shape, num_classes=info.num_classes,
                                   latent_dim=config.latent_dim, width=config.width, hidden=config.hidden,
                                   upsample_impl=config.upsample_impl)
  cfg = build_step_config(config)
  tx = optax.adam(config.learning_rate)
  # The aae discriminator uses the DCGAN optimiser (Radford et al., 2016).
  d_tx = optax.adam(config.d_learning_rate, b1=0.5)
  rep = parallel.replicated(mesh)
  init = jax.jit(lambda key: vae_step.init_train_state(model, tx, d_tx, key), out_shardings=rep)
  train_step = parallel.data_parallel_jit(vae_step.make_train_step(model, cfg, tx, d_tx), mesh)
  metrics_fn = jax.jit(
      lambda state, x, y, key: vae_step.per_example_metrics(model, cfg, state, x, y, key, config.eval_samples,
                                                            config.iwae_samples),
      in_shardings=(rep, parallel.batch_sharding(mesh), parallel.batch_sharding(mesh), rep),
      out_shardings=parallel.batch_sharding(mesh))
  return Programs(model, cfg, init, train_step, metrics_fn)


@dataclasses.dataclass
class FitResult:
  """What `fit` returns.

  Attributes:
    state: the train state at the last step run (restored unchanged if the run was finished).
    last_record: the last metrics record ({} if nothing was logged).
    stopped: a SIGTERM/SIGINT ended the run early (after a checkpoint).
  """
  state: vae_step.AETrainState
  last_record: dict[str, Any]
  stopped: bool


def fit(config: ml_collections.ConfigDict, programs: Programs, dataset: data.InMemoryDataset, workdir: str,
        mesh, name: str = "") -> FitResult:
  """Trains (or resumes from `workdir/checkpoints`) until `config.num_steps`.

  Writes `metrics.jsonl` (every `log_every` steps and the last) and checkpoints
  (every `checkpoint_every` steps, the last, and on SIGTERM/SIGINT). On a finished
  run it trains nothing and returns the restored state, which is how a caller
  gets trained parameters back (e.g. `programs.model.generate(result.state.params, ...)`).

  Args:
    config: the run's config (see `validate_config`).
    programs: `build_programs(config, mesh)`.
    dataset: training data in [0, 1].
    workdir: run folder for checkpoints/, metrics.jsonl and tensorboard/.
    mesh: the device mesh of `programs`.
    name: label of the progress lines.

  Returns:
    A `FitResult`.

  Raises:
    NonFiniteError: a logged loss is NaN or Inf (the last good checkpoint is named).
  """
  is_writer = jax.process_index() == 0
  state = programs.init(vae_step.make_key(config.seed))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
  state, restored = ckpt.restore_or(state)
  start = int(restored or 0)
  if restored is not None:
    logging.info("Resuming %s from step %d", name or workdir, start)
  writer = metric_writer.MetricWriter(workdir, resume_step=start, enabled=is_writer)
  tracker = progress.Progress(config.num_steps, start, name=name or config.model)
  last_record, stopped, last_saved = {}, False, restored
  try:
    with preemption.StopSignal() as stop:
      for step in range(start, config.num_steps):
        local = dataset.batch(step, config.batch_size, config.seed, jax.process_index(), jax.process_count())
        state, metrics = programs.train_step(state, parallel.shard_batch(local, mesh))
        done = step + 1
        is_last = done == config.num_steps
        if done % config.log_every == 0 or is_last:
          scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
          if not math.isfinite(scalars["loss"]):
            raise NonFiniteError(f"non-finite loss at step {done}; last good checkpoint: step {last_saved} in "
                                 f"{ckpt.directory}. Lower --config.learning_rate.")
          scalars["images_per_sec"] = tracker.rate(done) * config.batch_size
          writer.write(done, scalars)
          last_record = {"step": done, **scalars}
          tracker.report(done, f"loss={scalars['loss']:.4f} {scalars['images_per_sec']:.0f} img/s")
        if done % config.checkpoint_every == 0 or is_last:
          ckpt.save(done, state)
          last_saved = done
        if not is_last and stop.should_stop():
          ckpt.save(done, state)
          logging.warning("Stopped by %s at step %d; rerun the same command to resume.", stop.received, done)
          stopped = True
          break
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  if not last_record and is_writer:
    records = metric_writer.read_metrics(workdir)
    last_record = records[-1] if records else {}
  return FitResult(state, last_record, stopped)


def evaluate(programs: Programs, state: vae_step.AETrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int, key: jax.Array, mesh) -> dict[str, np.ndarray]:
  """Per-example metrics of every row of (images, labels), as host arrays [N].

  The data are cut into global batches of `batch_size` (the last one padded and
  the padding dropped); each process feeds its rows of every batch.
  """
  n = len(labels)
  outputs: dict[str, list[np.ndarray]] = {}
  for index, start in enumerate(range(0, n, batch_size)):
    rows = np.arange(start, start + batch_size) % n  # wrap-around padding, sliced off below
    rows = data.process_slice(rows, jax.process_index(), jax.process_count())
    batch = parallel.shard_batch({"image": images[rows], "label": labels[rows]}, mesh)
    result = programs.metrics_fn(state, batch["image"], batch["label"], jax.random.fold_in(key, index))
    result = multihost_utils.process_allgather(result, tiled=True) if jax.process_count() > 1 else result
    for k, v in jax.device_get(result).items():
      outputs.setdefault(k, []).append(np.asarray(v)[:min(batch_size, n - start)])
  return {k: np.concatenate(v) for k, v in outputs.items()}


def binarize_fixed(images: np.ndarray, seed: int) -> np.ndarray:
  """One fixed Bernoulli(intensity) draw of every pixel: the binarised test set of a run."""
  return (np.random.default_rng([seed, 0xB1]).random(images.shape) < images).astype(np.float32)


def summarize_test_metrics(model: autoencoders.ReconstructionModel, metrics: dict[str, np.ndarray]) -> dict[str, float]:
  """Test-set means: negative ELBO (and IWAE NLL) in nats per image, reconstruction MSE per pixel."""
  pixels = math.prod(model.image_shape)
  summary = {"test_recon_mse": float(np.mean(metrics["squared_error"]) / pixels)}
  names = {"neg_elbo": "test_neg_elbo_nats", "recon": "test_recon_nats", "kl": "test_kl_nats",
           "iwae_nll": "test_iwae_nll_nats", "aae_score": "test_aae_score"}
  summary.update({out: float(np.mean(metrics[k])) for k, out in names.items() if k in metrics})
  return summary


def load_split(config: ml_collections.ConfigDict, split: str, idx_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  raw, labels = data.load_arrays(config.dataset, split, idx_dir=idx_dir)
  return data.scale_images(raw, (0.0, 1.0)), labels


def train_vae(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
              overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes) one model, then writes results.json and the figures.

  Args:
    config: an autoencoder config (experiments/configs/{ae,vae,cvae}_mnist.py).
    workdir: run folder: config.json, metrics.jsonl, checkpoints/, results.json, *.png.
    idx_dir: folder with IDX files for the offline data source (None: TFDS).
    overwrite: discard an earlier run with a different config in `workdir`.

  Returns:
    results.json's content, or the last metrics record plus "stopped" if a signal ended the run.
  """
  mesh = parallel.make_mesh()
  programs = build_programs(config, mesh)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite,
                        outputs=("checkpoints", "metrics.jsonl", "tensorboard", "results.json"))
  train_images, train_labels = load_split(config, "train", idx_dir)
  result = fit(config, programs, data.InMemoryDataset(train_images, train_labels), workdir, mesh)
  if result.stopped:
    return {**result.last_record, "stopped": True}

  test_images, test_labels = load_split(config, "test", idx_dir)
  if config.eval_examples:
    keep = np.random.default_rng([config.seed, 0xE7A1]).permutation(len(test_labels))[:config.eval_examples]
    test_images, test_labels = test_images[np.sort(keep)], test_labels[np.sort(keep)]
  if config.binarize:
    test_images = binarize_fixed(test_images, config.seed)
  eval_key = jax.random.fold_in(vae_step.make_key(config.seed), 0xE7A1)
  metrics = evaluate(programs, result.state, test_images, test_labels, config.eval_batch_size, eval_key, mesh)
  results = {"model": config.model, "dataset": config.dataset, "num_steps": config.num_steps,
             "latent_dim": config.latent_dim, "likelihood": config.likelihood, "beta": config.beta,
             "binarized": bool(config.binarize), "num_test_examples": int(len(test_labels)),
             **summarize_test_metrics(programs.model, metrics), "final_train": result.last_record}
  if is_writer:
    params = jax.device_get(result.state.params)
    vae_figures.write_all(workdir, programs.model, params, test_images, test_labels, config.seed)
    images_lib.plot_curves(os.path.join(workdir, "loss_curves.png"), metric_writer.read_metrics(workdir),
                           ("loss", "neg_elbo", "recon", "kl", "d_loss"), title=f"{config.model} on {config.dataset}")
    workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
  for key in ("test_neg_elbo_nats", "test_iwae_nll_nats", "test_recon_mse"):
    if key in results:
      logging.info("%s = %.4f", key, results[key])
  return results

