"""The train_diffusion entrypoint's driver: check the config, load the data, train both stages, write figures.

Figures: the first stage's reconstructions (ldm), one sample grid per guidance scale
(one row per class) and a denoising trajectory; results.json records the run.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import metric_writer
from gan_jax import parallel
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.diffusion import train
from gan_jax.train import gan_loop

GUIDANCE_GRIDS = (0.0, 1.0, 3.0)
PER_CLASS = 8
TRAJECTORY_FRAMES = 8


def validate_config(config: ml_collections.ConfigDict) -> sources.DatasetInfo:
  info = sources.get_dataset_info(sources.DataSource.from_config(config))
  train.validate_training(config, info.image_shape, info.num_classes, len(parallel.mesh_devices()))
  return info


def train_diffusion(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                    overwrite: bool = False) -> dict[str, Any]:
  """Trains (or resumes) a diffusion run on the configured data, then writes results.json and the figures.

  Returns:
    results.json's content, or the last record plus 'stopped_by' when a signal ended the run.
  """
  info = validate_config(config)
  images, labels = gan_loop.load_train_arrays(config, idx_dir, cache_dir=splits.data_dir(workdir))
  start = time.perf_counter()
  record = train.fit_diffusion(config, images, labels, workdir, num_classes=info.num_classes, seed=config.seed,
                               overwrite=overwrite)
  if "stopped_by" in record:
    return record
  train_seconds = time.perf_counter() - start
  sample = train.load_sampler(config, workdir, image_shape=info.image_shape, num_classes=info.num_classes)
  key = jax.random.PRNGKey(config.seed)
  labels_grid = np.repeat(np.arange(info.num_classes), PER_CLASS)
  results = {"model": config.model, "dataset": config.dataset, "num_steps": config.num_steps,
             "train_images": int(len(labels)), "train_seconds": train_seconds, "final": record, "grids": {}}
  for guidance in GUIDANCE_GRIDS:
    start = time.perf_counter()
    grid = sample(key, labels_grid, guidance=guidance)
    seconds = time.perf_counter() - start
    name = f"samples_guidance_{guidance:g}.png"
    images_lib.save_grid(fs.join(workdir, name), grid, info.num_classes, PER_CLASS, (0, 255))
    results["grids"][name] = {"guidance": guidance, "images": int(len(grid)), "seconds": seconds}
  _trajectory(sample, workdir, info.num_classes, key, config.guidance)
  if sample.reconstruct is not None:
    _reconstructions(sample, images, workdir)
  images_lib.plot_curves(fs.join(workdir, "loss_curves.png"), metric_writer.read_metrics(workdir), ("loss",),
                         title=f"{config.model} on {config.dataset}")
  fs.write_json(fs.join(workdir, "results.json"), results)
  return results


def _trajectory(sample, workdir, num_classes, key, guidance) -> None:
  """One row per class: the predicted sample after evenly spaced sampler steps (decoded for the ldm)."""
  _, path = sample.trajectory(key, np.arange(num_classes), guidance)
  frames = np.linspace(0, path.shape[0] - 1, TRAJECTORY_FRAMES).round().astype(int)
  chosen = path[frames]  # [frames, classes, ...]
  if sample.decode is not None:
    chosen = jax.vmap(sample.decode)(chosen)
  chosen = np.clip(np.asarray(chosen), -1, 1).transpose(1, 0, 2, 3, 4).reshape((-1,) + chosen.shape[2:])
  images_lib.save_grid(fs.join(workdir, "trajectory.png"), chosen, num_classes, TRAJECTORY_FRAMES, (-1.0, 1.0))


def _reconstructions(sample, images, workdir) -> None:
  """Two rows: 16 training images, and their first-stage reconstructions."""
  originals = images[:16].astype(np.float32) / 127.5 - 1.0
  rows = np.concatenate([originals, np.clip(np.asarray(sample.reconstruct(originals)), -1, 1)])
  images_lib.save_grid(fs.join(workdir, "reconstructions.png"), rows, 2, len(originals), (-1.0, 1.0))
