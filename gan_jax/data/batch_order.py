"""Deterministic, resumable batch order for data held in host memory (NumPy only).

The examples of global batch `step` are a pure function of (seed, step): epoch
`e` visits the examples in the order of a permutation drawn from
`default_rng([seed, e])`. A restored run therefore needs no iterator state, only
the step it restored, to see exactly the batches an uninterrupted run would see.
Each process loads only its contiguous rows of every global batch.
"""
from __future__ import annotations

import functools

import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch (the remainder is dropped so every batch has `batch_size` rows).

  Raises:
    ValueError: batch_size <= 0 or fewer examples than one batch.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if num_examples < batch_size:
    raise ValueError(f"num_examples={num_examples} is smaller than batch_size={batch_size}; "
                     f"not even one full batch fits")
  return num_examples // batch_size


@functools.lru_cache(maxsize=64)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  # Consecutive steps share an epoch; caching avoids redrawing the permutation
  # every step, also for the members of a stacked program (one data set size each, up to
  # one per class) that draw their batches in turn. Read-only so a caller cannot corrupt
  # the cached order.
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  order.setflags(write=False)
  return order


def batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """The example indices of global batch number `step`.

  Args:
    step: global batch number (>= 0), counted across epochs.
    num_examples: size of the data set.
    batch_size: global batch size.
    seed: non-negative seed of the shuffling.

  Returns:
    int64 [batch_size]; batches of one epoch are disjoint.

  Raises:
    ValueError: negative step or seed, or batch_size not in [1, num_examples].
  """
  per_epoch = steps_per_epoch(num_examples, batch_size)
  if step < 0:
    raise ValueError(f"step must be non-negative, got {step}")
  if seed < 0:
    raise ValueError(f"seed must be non-negative, got {seed}")
  epoch, position = divmod(int(step), per_epoch)
  order = _epoch_permutation(int(num_examples), int(seed), epoch)
  return order[position * batch_size:(position + 1) * batch_size].astype(np.int64)


def process_slice(global_indices: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  """The contiguous rows of a global batch that process `process_index` loads.

  Contiguous rows match how `jax.make_array_from_process_local_data` assembles a
  batch sharded along its first axis over processes in index order.

  Args:
    global_indices: the global batch's indices [B].
    process_index: this process, in [0, process_count).
    process_count: number of processes; must divide B.

  Returns:
    global_indices[i * B / P:(i + 1) * B / P].

  Raises:
    ValueError: process_index out of range, or B not divisible by process_count.
  """
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must lie in [0, process_count), got {process_index} of {process_count}")
  size = len(global_indices)
  if size % process_count:
    raise ValueError(f"global batch size {size} is not divisible by process_count={process_count}")
  per_process = size // process_count
  return global_indices[process_index * per_process:(process_index + 1) * per_process]


class InMemoryDataset:
  """Scaled images and labels in host memory, served in the order of `batch_indices`.

  Attributes:
    images: float32 [N, H, W, C].
    labels: int32 [N].
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    """Stores the arrays.

    Args:
      images: floating-point images [N, ...], already scaled (see `scale_images`).
      labels: integer labels [N].

    Raises:
      ValueError: images are not floating point (unscaled uint8 would train on
        [0, 255]), labels are not integers, or the lengths differ.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if not np.issubdtype(images.dtype, np.floating):
      raise ValueError(f"images must be scaled floats (see scale_images), got {images.dtype}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
      raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {list(labels.shape)}")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels")
    self.images = images.astype(np.float32, copy=False)
    self.labels = labels.astype(np.int32, copy=False)

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  def batch(self, step: int, batch_size: int, seed: int, process_index: int = 0,
            process_count: int = 1) -> dict[str, np.ndarray]:
    """This process's rows of global batch `step`.

    Args:
      step: global batch number.
      batch_size: global batch size (all processes together).
      seed: shuffling seed.
      process_index: this process.
      process_count: number of processes; must divide batch_size.

    Returns:
      {'image': float32 [batch_size / process_count, ...], 'label': int32 [...]}.
    """
    rows = batch_indices(step, num_examples=self.num_examples, batch_size=batch_size, seed=seed)
    rows = process_slice(rows, process_index, process_count)
    return {"image": self.images[rows], "label": self.labels[rows]}


def class_balanced_indices(step: int, labels: np.ndarray, batch_size: int, seed: int) -> np.ndarray:
  """The example indices of class-balanced batch number `step`: each row a uniform class, then a uniform image of it.

  The sampling of the classifier re-training stage of cRT (Kang et al., ICLR 2020);
  a pure function of (seed, step), so a resumed run draws the same batches.

  Args:
    step: batch number (>= 0).
    labels: int labels [N] of the data set.
    batch_size: rows of the batch.
    seed: non-negative seed.

  Returns:
    int64 [batch_size].
  """
  if step < 0 or seed < 0:
    raise ValueError(f"step and seed must be non-negative, got {step} and {seed}")
  labels = np.asarray(labels)
  classes = np.unique(labels)
  members = [np.flatnonzero(labels == c) for c in classes]
  rng = np.random.default_rng([int(seed), int(step), 0xCB])
  picked = rng.integers(0, len(classes), batch_size)
  within = rng.random(batch_size)
  return np.asarray([members[c][int(u * len(members[c]))] for c, u in zip(picked, within)], np.int64)
