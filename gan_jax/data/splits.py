"""The arrays of a run, computed once at the top and handed down: training set, full train split, test sets.

A driver reads its config, calls `load_splits` once, and passes arrays to every
model it trains, so a GAN, a VAE and the classifiers of one benchmark see the
same imbalanced subset by construction (NumPy only).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from gan_jax import fs
from gan_jax.data import imbalance
from gan_jax.data import sources

# Tags of the seeded subsets drawn from a split (kept: they fix which images earlier runs used).
TEST_SUBSET_TAG = 0x7E57
VALIDATION_TAG = 0x7A1
Arrays = tuple[np.ndarray, np.ndarray]
CLASS_NAMES_FILE = "classes.json"


def data_dir(workdir: str) -> str:
  """`<workdir>/data`: the decoded image-folder caches and the label -> class-name mapping of a run."""
  return fs.join(workdir, "data")


def write_class_names(workdir: str, info: sources.DatasetInfo) -> str:
  """Writes `<workdir>/data/classes.json` ({"dataset", "class_names": [name of label 0, ...]}); returns its path."""
  path = fs.join(data_dir(workdir), CLASS_NAMES_FILE)
  fs.write_json(path, {"dataset": info.name, "image_shape": list(info.image_shape),
                       "class_names": list(info.class_names)})
  return path


def read_class_names(workdir: str) -> tuple[str, ...] | None:
  """The class names `write_class_names` recorded in a run folder (None for a run without them)."""
  path = fs.join(data_dir(workdir), CLASS_NAMES_FILE)
  return tuple(fs.read_json(path)["class_names"]) if fs.exists(path) else None


def seeded_subset(num_examples: int, limit: int, seed: int, tag: int = TEST_SUBSET_TAG) -> np.ndarray:
  """Sorted indices of `limit` examples drawn with default_rng([seed, tag]); all of them when limit <= 0."""
  if limit <= 0 or limit >= num_examples:
    return np.arange(num_examples)
  return np.sort(np.random.default_rng([seed, tag]).permutation(num_examples)[:limit])


def cut_indices(labels: np.ndarray, spec: imbalance.ImbalanceSpec, seed: int, num_classes: int) -> np.ndarray:
  """Sorted indices of the imbalanced subset `spec` describes (every index when it keeps everything)."""
  if not spec.active:
    return np.arange(len(labels))
  counts = spec.counts(imbalance.class_counts(labels, num_classes))
  return imbalance.make_imbalanced(labels, counts, seed, num_classes=num_classes)


def cut(images: np.ndarray, labels: np.ndarray, spec: imbalance.ImbalanceSpec, seed: int,
        num_classes: int) -> Arrays:
  """The imbalanced subset `spec` describes (the arrays themselves when it keeps everything)."""
  if not spec.active:
    return images, labels
  keep = cut_indices(labels, spec, seed, num_classes)
  return images[keep], labels[keep]


def validation_indices(labels: np.ndarray, used: np.ndarray, per_class: int, seed: int, num_classes: int) -> np.ndarray:
  """A balanced validation set: `per_class` images of each class among the rows not in `used`.

  Raises:
    ValueError: a class has fewer unused images than asked for.
  """
  unused = np.ones(len(labels), bool)
  unused[used] = False
  picked = []
  for c in range(num_classes):
    members = np.flatnonzero(unused & (labels == c))
    if len(members) < per_class:
      raise ValueError(f"class {c} has {len(members)} train images outside the imbalanced subset, fewer than "
                       f"config.validation_per_class={per_class}; lower it or the profile's n_max")
    picked.append(np.random.default_rng([seed, VALIDATION_TAG, c]).permutation(members)[:per_class])
  return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, np.int64)


def imbalanced_test_subset(images: np.ndarray, labels: np.ndarray, test_profile: str, seed: int,
                           num_classes: int) -> Arrays:
  """The test split cut with `test_profile`; a class with fewer images than asked keeps all it has."""
  available = imbalance.class_counts(labels, num_classes)
  wanted = imbalance.profile_counts(test_profile, available)
  counts = np.minimum(wanted, available).tolist()
  if counts != list(wanted):
    # MNIST's test split has 980 zeros, fewer than DeepSMOTE's 1000.
    logging.warning("Imbalanced test subset: profile asks %s, the test split has %s; using %s", list(wanted),
                    available.tolist(), counts)
  keep = imbalance.make_imbalanced(labels, counts, seed, num_classes=num_classes)
  return images[keep], labels[keep]


@dataclasses.dataclass(frozen=True)
class Splits:
  """The arrays of one run: uint8 images [N, H, W, C] and int32 labels [N].

  Attributes:
    info: the data set's static facts.
    train: the training set (imbalanced when the spec cuts it).
    full_train: the whole train split.
    test: the test split, or its seeded subset.
    imbalanced_test: `test` cut with the test profile (None without one).
    validation: a balanced set from the train split, disjoint from `train` (None unless asked for).
  """
  info: sources.DatasetInfo
  train: Arrays
  full_train: Arrays
  test: Arrays | None = None
  imbalanced_test: Arrays | None = None
  validation: Arrays | None = None

  @property
  def num_classes(self) -> int:
    return self.info.num_classes

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train[0].shape[1:])

  def train_counts(self) -> np.ndarray:
    return imbalance.class_counts(self.train[1], self.num_classes)


def load_splits(dataset: "str | sources.DataSource", *, imbalance_spec: imbalance.ImbalanceSpec | None = None, seed: int = 0,
                idx_dir: str | os.PathLike | None = None, with_test: bool = True, test_examples: int = 0,
                test_profile: str = "", validation_per_class: int = 0, cache_dir: str | None = None) -> Splits:
  """Loads a data set once and cuts it.

  Args:
    dataset: a `sources.DataSource`, or a `config.dataset` string.
    imbalance_spec: how to cut the train split (None: keep it whole).
    seed: draws the imbalanced subsets and the test subset.
    idx_dir: offline IDX folder (None: TFDS).
    with_test: also load the test split.
    test_examples: > 0 keeps a seeded subset of that many test images.
    test_profile: '' or a profile for the imbalanced test subset.
    validation_per_class: > 0 also draws a balanced validation set of that many images per class
      from the train images the imbalanced subset leaves out.
    cache_dir: where an image folder's decoded arrays are cached (None: decode every time).

  Returns:
    A `Splits`.
  """
  info = sources.get_dataset_info(dataset)
  full_train = sources.load_arrays(dataset, "train", idx_dir=idx_dir, cache_dir=cache_dir)
  used = cut_indices(full_train[1], imbalance_spec or imbalance.ImbalanceSpec(), seed, info.num_classes)
  train = (full_train[0][used], full_train[1][used]) if len(used) < len(full_train[1]) else full_train
  validation = None
  if validation_per_class > 0:
    rows = validation_indices(full_train[1], used, validation_per_class, seed, info.num_classes)
    validation = (full_train[0][rows], full_train[1][rows])
  test = imbalanced = None
  if with_test:
    test_images, test_labels = sources.load_arrays(dataset, "test", idx_dir=idx_dir, cache_dir=cache_dir)
    keep = seeded_subset(len(test_labels), test_examples, seed)
    test = (test_images[keep], test_labels[keep])
    if test_profile:
      imbalanced = imbalanced_test_subset(*test, test_profile, seed, info.num_classes)
  return Splits(info, train, full_train, test, imbalanced, validation)
