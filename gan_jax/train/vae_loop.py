"""Autoencoder / VAE training on arrays it is handed (`fit`), and the train_vae entrypoint's wrapper.

`fit` trains (or resumes) one model on an in-memory data set in a run folder;
batches come from `InMemoryDataset.batch` (a pure function of seed and step),
so a restored run sees exactly the batches of an uninterrupted one. `evaluate`
maps the per-example metrics over a data set. `train_vae` reads its config,
loads the data, trains, and reports test-set figures and image grids.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from gan_jax import batching
from gan_jax import checks
from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import metric_writer
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.data import batch_order
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.models import autoencoders
from gan_jax.train import loop
from gan_jax.train import vae_figures
from gan_jax.train import vae_step

POSITIVE_FIELDS = ("batch_size", "num_steps", "latent_dim", "width", "hidden", "log_every", "checkpoint_every",
                   "eval_batch_size", "eval_samples", "keep_checkpoints")
NON_NEGATIVE_FIELDS = ("beta", "iwae_samples", "eval_examples", "adversarial_weight", "aae_score_weight")
# The fields of a standalone run that its driver owns when it hands `fit` the arrays.
DATA_FIELDS = ("dataset", "seed", "model", *sources.SOURCE_DEFAULTS)
MIGRATIONS = workdir_lib.Migrations(added=dict(sources.SOURCE_DEFAULTS), retired=DATA_FIELDS)
EVAL_SUBSET_TAG = 0xE7A1
NONFINITE_HINT = "Lower --config.learning_rate."


def validate_training(config: ml_collections.ConfigDict, model: str, image_shape: Sequence[int], num_classes: int,
                      num_devices: int, prefix: str = "") -> None:
  """Checks every training field of `model` on images of `image_shape`, without data or devices."""
  build_step_config(config)
  checks.all_positive(config, POSITIVE_FIELDS, prefix)
  for field in ("learning_rate", "d_learning_rate"):
    checks.positive_number(config[field], prefix + field)
  for field in NON_NEGATIVE_FIELDS:
    checks.non_negative(config[field], prefix + field)
  build_model(config, model, image_shape, num_classes)
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % num_devices:
      raise ValueError(f"{prefix}{field}={config[field]} is not divisible by the number of devices ({num_devices})")


def build_step_config(config: ml_collections.ConfigDict) -> vae_step.StepConfig:
  return vae_step.StepConfig(likelihood=config.likelihood, gaussian_std=config.gaussian_std, beta=config.beta,
                             binarize=config.binarize, adversarial_weight=config.adversarial_weight,
                             aae_score_weight=config.aae_score_weight)


def build_model(config: ml_collections.ConfigDict, model: str, image_shape: Sequence[int],
                num_classes: int) -> autoencoders.ReconstructionModel:
  return autoencoders.build_model(model, image_shape=image_shape, num_classes=num_classes,
                                  latent_dim=config.latent_dim, width=config.width, hidden=config.hidden,
                                  upsample_impl=config.upsample_impl)


@dataclasses.dataclass(frozen=True)
class Programs:
  """A model and its jitted functions; built once and reused by every run of one config.

  Attributes:
    model: the autoencoder family.
    cfg: static step settings.
    init: key -> replicated initial train state.
    train_step: data-parallel (state, batch) -> (state, metrics); donates the state.
    metrics_fn: (state, images, labels, key) -> per-example metrics, batch sharded.
    mesh: the ('data',) mesh of the programs.
  """
  model: autoencoders.ReconstructionModel
  cfg: vae_step.StepConfig
  init: Callable[[jax.Array], vae_step.AETrainState]
  train_step: Callable
  metrics_fn: Callable
  mesh: jax.sharding.Mesh


def build_programs(config: ml_collections.ConfigDict, mesh, *, model: str, image_shape: Sequence[int],
                   num_classes: int) -> Programs:
  """Builds `model` with `config`'s settings, its optimizers and its jitted functions on `mesh`."""
  validate_training(config, model, image_shape, num_classes, mesh.devices.size)
  reconstruction_model = build_model(config, model, image_shape, num_classes)
  cfg = build_step_config(config)
  tx = optax.adam(config.learning_rate)
  # The aae discriminator uses the DCGAN optimiser (Radford et al., 2016).
  d_tx = optax.adam(config.d_learning_rate, b1=0.5)
  rep = parallel.replicated(mesh)
  init = jax.jit(lambda key: vae_step.init_train_state(reconstruction_model, tx, d_tx, key), out_shardings=rep)
  train_step = parallel.data_parallel_jit(vae_step.make_train_step(reconstruction_model, cfg, tx, d_tx), mesh)
  metrics_fn = jax.jit(
      lambda state, x, y, key: vae_step.per_example_metrics(reconstruction_model, cfg, state, x, y, key,
                                                            config.eval_samples, config.iwae_samples),
      in_shardings=(rep, parallel.batch_sharding(mesh), parallel.batch_sharding(mesh), rep),
      out_shardings=parallel.batch_sharding(mesh))
  return Programs(reconstruction_model, cfg, init, train_step, metrics_fn, mesh)


def _loss_check(state, scalars: dict | None, step: int):
  del state
  bad = loop.nonfinite_names(scalars or {}, ("loss",))
  return {}, (f"Non-finite {', '.join(bad)} at step {step}" if bad else None)


def fit(config: ml_collections.ConfigDict, programs: Programs, dataset: batch_order.InMemoryDataset, workdir: str,
        *, seed: int, name: str = "", overwrite: bool = False,
        info: sources.DatasetInfo | None = None) -> loop.LoopResult:
  """Trains (or resumes from `workdir/checkpoints`) until `config.num_steps`.

  Writes config.json, `metrics.jsonl` (every `log_every` steps and the last) and
  checkpoints (every `checkpoint_every` steps, the last, and on SIGTERM/SIGINT).
  On a finished run it trains nothing and returns the restored state, which is how
  a caller gets trained parameters back (`programs.model.generate(result.state.params, ...)`).

  Args:
    config: the training fields (see `validate_training`).
    programs: `build_programs(config, ...)`.
    dataset: training data in [0, 1].
    workdir: run folder.
    seed: initialisation, noise and batch order.
    name: label of the progress lines.
    overwrite: discard an earlier run with a different config in `workdir`.
    info: the data set's facts, recorded as `data/classes.json` so that samples can be named by class.

  Returns:
    The loop's result (state, last record, whether a signal stopped it).

  Raises:
    loop.NonFiniteError: a logged loss is NaN or Inf (the last good checkpoint is named).
  """
  if jax.process_index() == 0:
    workdir_lib.prepare(workdir, config, overwrite=overwrite,
                        outputs=("checkpoints", "metrics.jsonl", "tensorboard", "results.json"), migrations=MIGRATIONS)
    if info is not None:
      splits.write_class_names(workdir, info)

  def step_fn(state, step):
    local = dataset.batch(step, config.batch_size, seed, jax.process_index(), jax.process_count())
    return programs.train_step(state, parallel.shard_batch(local, programs.mesh))

  return loop.train(programs.init(vae_step.make_key(seed)), step_fn, num_steps=config.num_steps,
                    name=name or programs.model.name, log_every=config.log_every,
                    checkpoint_dir=fs.join(workdir, "checkpoints"), checkpoint_every=config.checkpoint_every,
                    keep_checkpoints=config.keep_checkpoints, metrics_dir=workdir, images_per_step=config.batch_size,
                    describe=lambda s: f"loss={s['loss']:.4f} {s['images_per_sec']:.0f} img/s", check=_loss_check,
                    nonfinite_hint=NONFINITE_HINT)


def evaluate(programs: Programs, state: vae_step.AETrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int, key: jax.Array) -> dict[str, np.ndarray]:
  """Per-example metrics of every row of (images, labels), as host arrays [N].

  The data are cut into global batches of `batch_size` (the last one padded and
  the padding dropped); each process feeds its rows of every batch.
  """

  def one_batch(index, rows):
    rows = batch_order.process_slice(rows, jax.process_index(), jax.process_count())
    batch = parallel.shard_batch({"image": images[rows], "label": labels[rows]}, programs.mesh)
    result = programs.metrics_fn(state, batch["image"], batch["label"], jax.random.fold_in(key, index))
    return multihost_utils.process_allgather(result, tiled=True) if jax.process_count() > 1 else result

  return batching.map_chunks(one_batch, len(labels), batch_size)


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


def validate_config(config: ml_collections.ConfigDict) -> sources.DatasetInfo:
  """Checks a standalone autoencoder config; returns the data set's info."""
  checks.one_of(config.model, autoencoders.AUTOENCODER_MODELS, "model")
  info = sources.get_dataset_info(sources.DataSource.from_config(config))
  validate_training(config, config.model, info.image_shape, info.num_classes, len(parallel.mesh_devices()))
  return info


def train_vae(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
              overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes) one model, then writes results.json and the figures.

  Args:
    config: a standalone autoencoder config (model, dataset, seed and training fields).
    workdir: run folder: config.json, metrics.jsonl, checkpoints/, results.json, *.png.
    idx_dir: folder with IDX files for the offline data source (None: TFDS).
    overwrite: discard an earlier run with a different config in `workdir`.

  Returns:
    results.json's content, or the last metrics record plus "stopped" if a signal ended the run.
  """
  info = validate_config(config)
  mesh = parallel.make_mesh()
  programs = build_programs(config, mesh, model=config.model, image_shape=info.image_shape,
                            num_classes=info.num_classes)
  data = splits.load_splits(sources.DataSource.from_config(config), seed=config.seed, idx_dir=idx_dir,
                            cache_dir=splits.data_dir(workdir))
  unit = lambda arrays: (sources.scale_images(arrays[0], (0.0, 1.0)), arrays[1])
  train_images, train_labels = unit(data.train)
  result = fit(config, programs, batch_order.InMemoryDataset(train_images, train_labels), workdir, seed=config.seed,
               overwrite=overwrite, info=info)
  if result.stopped:
    return {**result.last_record, "stopped": True}

  test_images, test_labels = unit(data.test)
  keep = splits.seeded_subset(len(test_labels), config.eval_examples, config.seed, EVAL_SUBSET_TAG)
  test_images, test_labels = test_images[keep], test_labels[keep]
  if config.binarize:
    test_images = binarize_fixed(test_images, config.seed)
  eval_key = jax.random.fold_in(vae_step.make_key(config.seed), EVAL_SUBSET_TAG)
  metrics = evaluate(programs, result.state, test_images, test_labels, config.eval_batch_size, eval_key)
  results = {"model": config.model, "dataset": config.dataset, "num_steps": config.num_steps,
             "latent_dim": config.latent_dim, "likelihood": config.likelihood, "beta": config.beta,
             "binarized": bool(config.binarize), "num_test_examples": int(len(test_labels)),
             **summarize_test_metrics(programs.model, metrics), "final_train": result.last_record}
  if jax.process_index() == 0:
    params = jax.device_get(result.state.params)
    vae_figures.write_all(workdir, programs.model, params, test_images, test_labels, config.seed)
    images_lib.plot_curves(fs.join(workdir, "loss_curves.png"), metric_writer.read_metrics(workdir),
                           ("loss", "neg_elbo", "recon", "kl", "d_loss"), title=f"{config.model} on {config.dataset}")
    fs.write_json(fs.join(workdir, "results.json"), results)
  for key in ("test_neg_elbo_nats", "test_iwae_nll_nats", "test_recon_mse"):
    if key in results:
      logging.info("%s = %.4f", key, results[key])
  return results
