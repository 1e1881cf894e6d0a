"""The rebalancing methods of the imbalance benchmark: one `Method` record each, built from a data part and a loss part.

The data part says where images beyond the imbalanced real set come from:
nowhere (`real`), imbalanced-learn's resamplers (`random_oversample`, `smote`)
or a generator (`gan_jax.protocols.imbalance.generators`). The loss part says
how the classifier's loss treats the classes (`cross_entropy`, or
inverse-frequency `class_weight`). A method name is a data part, a loss part
(on the real set), or `<data part>+<loss part>`. Each method that adds images
adds round(ratio * (n_max - n_c)) to class c, so ratio 1 brings every class to
the majority count n_max.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from gan_jax import checks
from gan_jax.protocols.imbalance import generators

# How the classifier closes the gap that synthetic_ratio < 1 leaves (`training_set`).
FILL_REMAINDER = ("none", "class_weight", "random_oversample")
RESAMPLERS = ("random_oversample", "smote")


@dataclasses.dataclass(frozen=True)
class DataPart:
  """Where a method's extra images come from: 'real' (none), 'resample' or 'generator'."""
  name: str
  kind: str


@dataclasses.dataclass(frozen=True)
class LossPart:
  """How the classifier's loss weighs the classes ('cross_entropy': equally)."""
  name: str


@dataclasses.dataclass(frozen=True)
class Method:
  """A rebalancing method.

  Attributes:
    name: as written in config.methods.
    data: its data part.
    loss: its loss part.
    group: 'baseline' (none), 'classic' (remedies without a generator) or 'generative' (the
      report's verdict compares the best of the last two groups).
  """
  name: str
  data: DataPart
  loss: LossPart
  group: str

  @property
  def adds_images(self) -> bool:
    return self.data.kind != "real"

  @property
  def generator(self) -> str | None:
    return self.data.name if self.data.kind == "generator" else None


REAL = DataPart("real", "real")
DATA_PARTS = {p.name: p for p in [REAL] + [DataPart(n, "resample") for n in RESAMPLERS] +
              [DataPart(n, "generator") for n in generators.GENERATORS]}
CROSS_ENTROPY = LossPart("cross_entropy")
LOSS_PARTS = {p.name: p for p in (CROSS_ENTROPY, LossPart("class_weight"))}

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("none", REAL, CROSS_ENTROPY, "baseline"),
    Method("class_weight", REAL, LOSS_PARTS["class_weight"], "classic"),
    *(Method(n, DATA_PARTS[n], CROSS_ENTROPY, "classic") for n in RESAMPLERS),
    *(Method(n, DATA_PARTS[n], CROSS_ENTROPY, "generative") for n in generators.GENERATORS),
]}


def get_method(name: str) -> Method:
  """The record of a method name (ValueError listing the methods otherwise)."""
  if name in METHODS:
    return METHODS[name]
  raise ValueError(f"Unknown method(s) {[name]} in config.methods; choose from: {', '.join(METHODS)}")


def parse_methods(value) -> list[str]:
  """'none,smote' / ('none', 'smote') -> ['none', 'smote'], in the registry's order.

  Raises:
    ValueError: an unknown or repeated method, or none at all.
  """
  names = checks.parse_list(value)
  unknown = [n for n in names if n not in METHODS]
  if unknown or not names:
    raise ValueError(f"Unknown method(s) {unknown or value!r} in config.methods; choose from: {', '.join(METHODS)}")
  if len(set(names)) != len(names):
    raise ValueError(f"config.methods lists a method twice: {value!r}")
  return [m for m in METHODS if m in names]


def remainder_counts(real_counts: Sequence[int], augmented_counts: Sequence[int]) -> np.ndarray:
  """Images still missing per class after augmentation: max(real counts) - augmented count, at least 0."""
  real_counts, augmented_counts = np.asarray(real_counts, np.int64), np.asarray(augmented_counts, np.int64)
  return np.maximum(real_counts.max() - augmented_counts, 0)


def synthetic_counts(counts: Sequence[int], ratio: float) -> np.ndarray:
  """Images to add per class: round(ratio * (max(counts) - n_c))."""
  checks.in_range(ratio, "synthetic_ratio", 0.0, 10.0)
  counts = np.asarray(counts, np.int64)
  return np.round(ratio * (counts.max() - counts)).astype(np.int64)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """w_c = N / (C * n_c), so every class carries the same total weight (scikit-learn's 'balanced')."""
  counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes).astype(np.float64)
  if np.any(counts == 0):
    raise ValueError(f"class_weight needs every class present, got counts {counts.astype(int).tolist()}")
  return (counts.sum() / (num_classes * counts)).astype(np.float32)


def imblearn_synthetic(method: str, images: np.ndarray, labels: np.ndarray, add: Sequence[int], seed: int,
                       k_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """The images imbalanced-learn's RandomOverSampler or SMOTE adds, on flattened pixels.

  Args:
    method: 'random_oversample' or 'smote'.
    images: uint8 [N, H, W, C] (the imbalanced training set).
    labels: int [N].
    add: images to add per class.
    seed: the resampler's random_state.
    k_neighbors: SMOTE's k (DeepSMOTE's baseline uses 5).

  Returns:
    (uint8 images [M, H, W, C], int32 labels [M]) of the added examples only.
  """
  from imblearn import over_sampling  # pylint: disable=g-import-not-at-top

  checks.one_of(method, RESAMPLERS, "imbalanced-learn method")
  counts = np.bincount(labels, minlength=len(add))
  targets = {c: int(counts[c] + add[c]) for c in range(len(add)) if add[c] > 0}
  if not targets:
    return images[:0], labels[:0].astype(np.int32)
  flat = images.reshape(len(images), -1)
  if method == "random_oversample":
    resampler = over_sampling.RandomOverSampler(sampling_strategy=targets, random_state=seed)
  else:
    smallest = min(int(counts[c]) for c in targets)
    if smallest <= k_neighbors:
      raise ValueError(f"smote needs more than k_neighbors={k_neighbors} images in every class it "
                       f"oversamples; the smallest has {smallest}")
    resampler = over_sampling.SMOTE(sampling_strategy=targets, k_neighbors=k_neighbors, random_state=seed)
  resampled, resampled_labels = resampler.fit_resample(flat.astype(np.float32), labels)
  # imbalanced-learn returns the original rows first, then the new ones.
  added = np.clip(np.round(resampled[len(flat):]), 0, 255).astype(np.uint8)
  return added.reshape((-1,) + images.shape[1:]), resampled_labels[len(flat):].astype(np.int32)


def sample_with_filter(sample: Callable[[int, int], np.ndarray], add: Sequence[int],
                       confidence: Callable[[np.ndarray, int], np.ndarray] | None, threshold: float,
                       max_rounds: int = 8) -> tuple[np.ndarray, np.ndarray, dict]:
  """Generated images per class, optionally kept only if a classifier is confident in their class.

  Args:
    sample: (class, n) -> uint8 images [n, H, W, C] of that class; successive
      calls must return fresh samples.
    add: images wanted per class.
    confidence: (images, class) -> probability [n] a filter classifier gives
      the intended class; None disables filtering.
    threshold: keep images whose confidence is at least this.
    max_rounds: rounds of 2x oversampling before the best-scoring rejected
      images fill what is still missing (so a class never ends up short).

  Returns:
    (uint8 images [sum(add), ...], int32 labels, {'acceptance_rate': [per class], 'filled': [per class]}).
  """
  out_images, out_labels, acceptance, filled = [], [], [], []
  for c, wanted in enumerate(int(a) for a in add):
    if wanted <= 0:
      acceptance.append(None)
      filled.append(0)
      continue
    if confidence is None or threshold <= 0:
      kept = sample(c, wanted)
      acceptance.append(1.0)
      filled.append(0)
    else:
      kept_parts, reject_parts, reject_scores, drawn, accepted = [], [], [], 0, 0
      for _ in range(max_rounds):
        batch = sample(c, 2 * (wanted - accepted))
        scores = confidence(batch, c)
        good = scores >= threshold
        kept_parts.append(batch[good])
        reject_parts.append(batch[~good])
        reject_scores.append(scores[~good])
        drawn += len(batch)
        accepted += int(good.sum())
        if accepted >= wanted:
          break
      kept = np.concatenate(kept_parts)[:wanted]
      missing = wanted - len(kept)
      if missing:
        order = np.argsort(-np.concatenate(reject_scores))[:missing]
        kept = np.concatenate([kept, np.concatenate(reject_parts)[order]])
      acceptance.append(accepted / max(drawn, 1))
      filled.append(missing)
    out_images.append(kept)
    out_labels.append(np.full(len(kept), c, np.int32))
  if not out_images:  # no class needs images: an empty set of the right shape
    empty = sample(0, 0)
    return empty, np.zeros((0,), np.int32), {"acceptance_rate": acceptance, "filled": filled}
  return np.concatenate(out_images), np.concatenate(out_labels), {"acceptance_rate": acceptance,
                                                                   "filled": filled}


def training_set(method: Method, real: tuple[np.ndarray, np.ndarray], added: tuple[np.ndarray, np.ndarray] | None,
                 *, num_classes: int, fill_remainder: str, seed: int):
  """A method's classifier training set and per-class loss weights (None: unweighted).

  The real imbalanced set plus the method's added images. A method that adds
  images and leaves a gap (synthetic_ratio < 1) has it closed by
  `fill_remainder`: inverse-frequency weights over the augmented set, or
  duplicates of real images drawn by imbalanced-learn. The `class_weight` loss
  part weighs the final set by inverse class frequency.

  Returns:
    (uint8 images, int32 labels, class weights [C] or None).
  """
  images, labels = real
  if method.adds_images:
    images = np.concatenate([images, added[0]])
    labels = np.concatenate([labels, added[1]]).astype(np.int32)
    if fill_remainder == "random_oversample":
      real_counts = np.bincount(real[1], minlength=num_classes)
      missing = remainder_counts(real_counts, np.bincount(labels, minlength=num_classes))
      extra_images, extra_labels = imblearn_synthetic("random_oversample", *real, missing, seed)
      images = np.concatenate([images, extra_images])
      labels = np.concatenate([labels, extra_labels]).astype(np.int32)
  weighted = method.loss.name == "class_weight" or (method.adds_images and fill_remainder == "class_weight")
  return images, labels, inverse_frequency_weights(labels, num_classes) if weighted else None
