"""The rebalancing methods of the imbalance benchmark: what each adds to the imbalanced training set.

Every method except `none` and `class_weight` adds images: `random_oversample`
and `smote` through imbalanced-learn, the generative methods by sampling a
trained generator. Each method adds round(ratio * (n_max - n_c)) images to
class c, so ratio 1 brings every class to the majority count n_max.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

CLASSIC_METHODS = ("none", "class_weight", "random_oversample", "smote")
GAN_METHODS = ("dcgan", "cgan", "acgan")
GENERATIVE_METHODS = GAN_METHODS + ("cvae",)
METHODS = CLASSIC_METHODS + GENERATIVE_METHODS
# Methods whose training set is the imbalanced one as is (class_weight only reweights the loss).
NO_SYNTHETIC = ("none", "class_weight")
# How the classifier closes the gap that synthetic_ratio < 1 leaves (pipeline.classifier_training_set).
FILL_REMAINDER = ("none", "class_weight", "random_oversample")


def parse_methods(value) -> list[str]:
  """'none,smote' / ('none', 'smote') -> ['none', 'smote'], in the canonical order of METHODS.

  Raises:
    ValueError: an unknown or repeated method, or none at all.
  """
  items = value if isinstance(value, (list, tuple)) else str(value).strip("()[] ").split(",")
  names = [str(v).strip().strip("'\"") for v in items if str(v).strip()]
  unknown = [n for n in names if n not in METHODS]
  if unknown or not names:
    raise ValueError(f"Unknown method(s) {unknown or value!r} in config.methods; choose from: {', '.join(METHODS)}")
  if len(set(names)) != len(names):
    raise ValueError(f"config.methods lists a method twice: {value!r}")
  return [m for m in METHODS if m in names]


def check_synthetic_ratio(ratio: float) -> None:
  """Raises ValueError for a ratio outside [0, 10]."""
  if not 0.0 <= ratio <= 10.0:
    raise ValueError(f"config.synthetic_ratio must lie in [0, 10], got {ratio}")


def check_fill_remainder(fill: str) -> None:
  """Raises ValueError for a fill_remainder outside FILL_REMAINDER."""
  if fill not in FILL_REMAINDER:
    raise ValueError(f"config.fill_remainder must be one of {', '.join(FILL_REMAINDER)}, got {fill!r}")


def remainder_counts(real_counts: Sequence[int], augmented_counts: Sequence[int]) -> np.ndarray:
  """Images still missing per class after augmentation: max(real counts) - augmented count, at least 0."""
  real_counts, augmented_counts = np.asarray(real_counts, np.int64), np.asarray(augmented_counts, np.int64)
  return np.maximum(real_counts.max() - augmented_counts, 0)


def synthetic_counts(counts: Sequence[int], ratio: float) -> np.ndarray:
  """Images to add per class: round(ratio * (max(counts) - n_c)) (ratio checked by check_synthetic_ratio)."""
  check_synthetic_ratio(ratio)
  counts = np.asarray(counts, np.int64)
  return np.round(ratio * (counts.max() - counts)).astype(np.int64)


def imblearn_synthetic(method: str, images: np.ndarray, labels: np.ndarray, add: Sequence[int], seed: int,
                       k_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """The images imbalanced-learn's RandomOverSampler or SMOTE adds, on flattened pixels.

  Args:
    method: 'random_oversample' or 'smote'.
    images: uint8 [N, H, W, C] (the imbalanced training set).
    labels: int [N].
    add: images to add per class.
    seed: the sampler's random_state.
    k_neighbors: SMOTE's k (DeepSMOTE's baseline uses 5).

  Returns:
    (uint8 images [M, H, W, C], int32 labels [M]) of the added examples only.
  """
  from imblearn import over_sampling  # pylint: disable=g-import-not-at-top

  counts = np.bincount(labels, minlength=len(add))
  targets = {c: int(counts[c] + add[c]) for c in range(len(add)) if add[c] > 0}
  if not targets:
    return images[:0], labels[:0].astype(np.int32)
  flat = images.reshape(len(images), -1)
  if method == "random_oversample":
    sampler = over_sampling.RandomOverSampler(sampling_strategy=targets, random_state=seed)
  elif method == "smote":
    smallest = min(int(counts[c]) for c in targets)
    if smallest <= k_neighbors:
      raise ValueError(f"smote needs more than k_neighbors={k_neighbors} images in every class it "
                       f"oversamples; the smallest has {smallest}")
    sampler = over_sampling.SMOTE(sampling_strategy=targets, k_neighbors=k_neighbors, random_state=seed)
  else:
    raise ValueError(f"Unknown imbalanced-learn method '{method}'; choose random_oversample or smote")
  resampled, resampled_labels = sampler.fit_resample(flat.astype(np.float32), labels)
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
