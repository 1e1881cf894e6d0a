"""Streaming tf.data input pipelines over TFDS (imports TensorFlow; not re-exported by `gan_jax.data`).

Each process reads its own shard of the split (`tfds.split_for_jax_process`) and
yields per-process batches; `jax.make_array_from_process_local_data` then
assembles the global batch. Use this for data sets too large for host memory or
for evaluation; training on MNIST-sized data uses `gan_jax.data.InMemoryDataset`,
whose order is a pure function of the step and so resumes exactly.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gan_jax.data import sources


def process_split(split: str, process_index: int | None = None, process_count: int | None = None):
  """This process's shard of `split`.

  Shards have equal sizes (up to `process_count - 1` trailing examples are
  dropped) so every process yields the same number of batches; unequal counts
  would leave some processes waiting in a collective at the end of an epoch.

  Args:
    split: a TFDS split, e.g. 'train' or 'test[:50%]'.
    process_index: this process (default: jax.process_index()).
    process_count: number of processes (default: jax.process_count()).

  Returns:
    A split specification for `tfds.load`.

  Raises:
    ValueError: process_index is not in [0, process_count).
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must lie in [0, process_count), got {process_index} of {process_count}")
  return tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count,
                                    drop_remainder=True)


def _image_and_label(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  # Drops features such as CIFAR-10's string 'id' that cannot be batched into arrays.
  return {"image": example["image"], "label": tf.cast(example["label"], tf.int32)}


def _scaler(output_range: Sequence[float]):
  """A tf.data map function that scales uint8 images like `sources.scale_images`."""
  lo, hi = sources.check_output_range(output_range)

  def scale(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    unit = tf.cast(example["image"], tf.float32) / 255.0
    # Same interpolation as scale_images, so both sources give identical pixels.
    image = tf.constant(lo, tf.float32) * (1.0 - unit) + tf.constant(hi, tf.float32) * unit
    return {"image": image, "label": example["label"]}

  return scale


def make_tfds_dataset(name: str, split: str, *, batch_size: int, seed: int,
                      output_range: Sequence[float] = (-1.0, 1.0), shuffle: bool = True, repeat: bool = True,
                      shuffle_buffer: int = 10_000, cache: bool = True, data_dir: str | None = None,
                      download: bool = True, process_index: int | None = None,
                      process_count: int | None = None) -> tf.data.Dataset:
  """A batched tf.data pipeline over this process's shard of a TFDS split.

  Args:
    name: a key of `sources.DATASETS`.
    split: TFDS split, e.g. 'train'.
    batch_size: per-process batch size (the global batch divided by process_count).
    seed: seed of the file and example shuffling; the same seed gives the same batches.
    output_range: (lo, hi) the pixels are scaled to.
    shuffle: shuffle files and examples (off for evaluation).
    repeat: repeat forever (off for one pass, e.g. evaluation).
    shuffle_buffer: examples in the shuffle buffer.
    cache: keep the decoded uint8 shard in memory after the first pass (fine for
      MNIST and CIFAR-10: at most 150 MB).
    data_dir: TFDS data folder (None: TFDS's default).
    download: let TFDS download and prepare the data set if `data_dir` lacks it.
    process_index: this process (default: jax.process_index()).
    process_count: number of processes (default: jax.process_count()).

  Returns:
    A dataset of {'image': float32 [batch_size, H, W, C] in output_range,
    'label': int32 [batch_size]}; incomplete final batches are dropped.

  Raises:
    ValueError: unknown data set, bad output_range, batch_size or process index.
    sources.DataUnavailableError: TFDS cannot load the data set.
  """
  sources.get_dataset_info(name)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  scale = _scaler(output_range)
  shard = process_split(split, process_index, process_count)
  try:
    ds = tfds.load(name, split=shard, data_dir=data_dir, download=download, shuffle_files=shuffle,
                   read_config=tfds.ReadConfig(shuffle_seed=seed))
  except Exception as e:  # pylint: disable=broad-except
    # Offline TFDS fails in many ways; all of them mean the data is unavailable.
    raise sources.tfds_unavailable_error(name, split, e, allow_download=download) from e
  ds = ds.map(_image_and_label, num_parallel_calls=tf.data.AUTOTUNE)
  if cache:
    ds = ds.cache()
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def as_numpy_batches(ds: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
  """Iterates a dataset as dicts of NumPy arrays."""
  return iter(tfds.as_numpy(ds))
