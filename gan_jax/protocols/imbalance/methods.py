"""The rebalancing methods of the imbalance benchmark: one `Method` record each, a data part and a loss part.

The data part says where images beyond the imbalanced real set come from:
nowhere (`real`), imbalanced-learn's resamplers (`random_oversample`, `smote`)
or a generator (`gan_jax.protocols.imbalance.generators`). The loss part says
how the classifier learns from them: plain cross-entropy, inverse-frequency
class weights, or one of the long-tail remedies (logit adjustment, Balanced
Softmax, LDAM with deferred re-weighting, DRW, classifier re-training, mixup /
Remix with DRW). A method name is a data part, a loss part (on the real set),
or `<generator>+<loss part>`: generated images and a loss, combined.

Each method that adds images adds round(ratio * (n_max - n_c)) to class c, so
ratio 1 brings every class to the majority count n_max; a combination adds
`combination_ratio` of the gap and leaves the rest to its loss.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from absl import logging

from gan_jax import checks
from gan_jax import fs
from gan_jax import progress
from gan_jax.protocols.imbalance import generators

# How the classifier closes the gap that synthetic_ratio < 1 leaves (`training_set`).
FILL_REMAINDER = ("none", "class_weight", "random_oversample")
RESAMPLERS = ("random_oversample", "smote")
GROUPS = ("baseline", "classic", "generative", "loss", "combined")


@dataclasses.dataclass(frozen=True)
class DataPart:
  """Where a method's extra images come from: 'real' (none), 'resample' or 'generator'."""
  name: str
  kind: str


@dataclasses.dataclass(frozen=True)
class LossPart:
  """How the classifier's loss treats the classes.

  Attributes:
    name: as written in config.methods.
    kind: the loss (classifier_step.LOSS_KINDS).
    head: 'linear', or 'cosine' (the normalised head LDAM is defined on).
    weights: 'none' or 'inverse_frequency' (N / (C n_c), from the first step).
    deferred: 'none' or 'effective_number': class-balanced weights from the learning-rate
      decay on (deferred re-weighting, Cao et al., NeurIPS 2019).
    mixup: trains on mixup batches (with Remix's labels when config.remix).
    posthoc: trains with plain cross-entropy and predicts with post-hoc logit adjustment.
    retrain_head: re-trains the last layer of the plain cross-entropy classifier on
      class-balanced batches, the features frozen (cRT, Kang et al., ICLR 2020).
  """
  name: str
  kind: str = "cross_entropy"
  head: str = "linear"
  weights: str = "none"
  deferred: str = "none"
  mixup: bool = False
  posthoc: bool = False
  retrain_head: bool = False

  @property
  def builds_on_plain(self) -> bool:
    """Whether it starts from (or predicts with) the plain cross-entropy classifier of the same data."""
    return self.posthoc or self.retrain_head


@dataclasses.dataclass(frozen=True)
class Method:
  """A rebalancing method.

  Attributes:
    name: as written in config.methods.
    data: its data part.
    loss: its loss part.
    group: 'baseline' (none), 'classic' (class weights and resampling), 'generative' (generated
      images, cross-entropy), 'loss' (a long-tail loss on the real set) or 'combined'
      (generated images and a long-tail loss); the report's verdict compares the groups.
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

  @property
  def plain(self) -> str:
    """The method with this data part and plain cross-entropy (what cRT and post-hoc start from)."""
    return "none" if self.data.kind == "real" else self.data.name


REAL = DataPart("real", "real")
DATA_PARTS = {p.name: p for p in [REAL] + [DataPart(n, "resample") for n in RESAMPLERS] +
              [DataPart(n, "generator") for n in generators.GENERATORS]}
CROSS_ENTROPY = LossPart("cross_entropy")
CLASS_WEIGHT = LossPart("class_weight", weights="inverse_frequency")
# The long-tail remedies, in the order the report lists them.
LONG_TAIL_LOSSES = (
    LossPart("logit_adjustment", kind="logit_adjusted"),
    LossPart("logit_adjustment_posthoc", posthoc=True),
    LossPart("balanced_softmax", kind="balanced_softmax"),
    LossPart("ldam_drw", kind="ldam", head="cosine", deferred="effective_number"),
    LossPart("drw", deferred="effective_number"),
    LossPart("crt", retrain_head=True),
    LossPart("mixup_drw", mixup=True, deferred="effective_number"),
)
LOSS_PARTS = {p.name: p for p in (CROSS_ENTROPY, CLASS_WEIGHT) + LONG_TAIL_LOSSES}

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("none", REAL, CROSS_ENTROPY, "baseline"),
    Method("class_weight", REAL, CLASS_WEIGHT, "classic"),
    *(Method(n, DATA_PARTS[n], CROSS_ENTROPY, "classic") for n in RESAMPLERS),
    *(Method(n, DATA_PARTS[n], CROSS_ENTROPY, "generative") for n in generators.GENERATORS),
    *(Method(p.name, REAL, p, "loss") for p in LONG_TAIL_LOSSES),
]}


def _allowed() -> str:
  return (f"{', '.join(METHODS)}, or <generator>+<loss> with a generator of {', '.join(generators.GENERATORS)} "
          f"and a loss of {', '.join(p.name for p in LONG_TAIL_LOSSES)}")


def get_method(name: str) -> Method:
  """The record of a method name: a registered method or a `<generator>+<loss>` combination."""
  if name in METHODS:
    return METHODS[name]
  data_name, _, loss_name = name.partition("+")
  data, loss = DATA_PARTS.get(data_name), LOSS_PARTS.get(loss_name)
  if data is None or data.kind != "generator" or loss not in LONG_TAIL_LOSSES:
    raise ValueError(f"Unknown method(s) {[name]} in config.methods; choose from: {_allowed()}")
  return Method(name, data, loss, "combined")


def parse_methods(value) -> list[str]:
  """'none,smote,cgan+drw' -> registered methods in the registry's order, then combinations as given.

  A method that builds on the plain cross-entropy classifier of its data (crt,
  logit_adjustment_posthoc) brings that method into the run.

  Raises:
    ValueError: an unknown or repeated method, or none at all.
  """
  names = checks.parse_list(value)
  if not names:
    raise ValueError(f"Unknown method(s) {value!r} in config.methods; choose from: {_allowed()}")
  if len(set(names)) != len(names):
    raise ValueError(f"config.methods lists a method twice: {value!r}")
  records = [get_method(n) for n in names]
  wanted = set(names) | {m.plain for m in records if m.loss.builds_on_plain}
  combinations = [m.name for m in records if m.name not in METHODS]
  return [m for m in METHODS if m in wanted] + combinations


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


@dataclasses.dataclass(frozen=True)
class ClassDraw:
  """The images a class gets: `images` uint8 [n, ...], the filter's `acceptance` (None: no images
  wanted) and how many of them are `filled` with the best-scoring rejects."""
  images: np.ndarray
  acceptance: float | None
  filled: int


class ClassDrawStore:
  """The finished classes of one synthetic draw, a file each, so that a stopped draw resumes by class.

  A class's draws depend only on the class (see `sample_with_filter`), so a kept class
  equals what the resumed draw would compute.
  """

  def __init__(self, folder: str):
    self.folder = folder

  def _path(self, c: int) -> str:
    return fs.join(self.folder, f"c{c}.npz")

  def load(self, c: int) -> ClassDraw | None:
    """Class c as an earlier, stopped draw kept it; None if it was not finished."""
    if not fs.exists(self._path(c)):
      return None
    arrays = fs.load_npz(self._path(c))
    return ClassDraw(arrays["image"], float(arrays["acceptance"]), int(arrays["filled"]))

  def keep(self, c: int, draw: ClassDraw) -> None:
    fs.save_npz(self._path(c), image=draw.images, acceptance=np.float64(draw.acceptance),
                filled=np.int64(draw.filled))

  def clear(self) -> None:
    fs.remove(self.folder)


# Rounds of redrawing before the best-scoring rejects fill a class: the default of every filtered
# draw, and the behaviour of run folders from before `filter_rounds` was a config field.
FILTER_ROUNDS = 8


def _draw_class(sample: Callable[[int, int], np.ndarray], c: int, wanted: int,
                confidence: Callable[[np.ndarray, int], np.ndarray] | None, threshold: float,
                max_rounds: int) -> ClassDraw:
  if confidence is None or threshold <= 0:
    return ClassDraw(sample(c, wanted), 1.0, 0)
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
  return ClassDraw(kept, accepted / max(drawn, 1), missing)


def sample_with_filter(sample: Callable[[int, int], np.ndarray], add: Sequence[int],
                       confidence: Callable[[np.ndarray, int], np.ndarray] | None, threshold: float,
                       max_rounds: int = FILTER_ROUNDS, name: str = "",
                       finished: Callable[[int], ClassDraw | None] | None = None,
                       on_class: Callable[[int, ClassDraw], None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
  """Generated images per class, optionally kept only if a classifier is confident in their class.

  Args:
    sample: (class, n) -> uint8 images [n, H, W, C] of that class; successive
      calls must return fresh samples, and a class's draws must not depend on
      the other classes' (so a class can be redrawn, or taken from `finished`, alone).
    add: images wanted per class.
    confidence: (images, class) -> probability [n] a filter classifier gives
      the intended class; None disables filtering.
    threshold: keep images whose confidence is at least this.
    max_rounds: rounds of 2x oversampling before the best-scoring rejected
      images fill what is still missing (so a class never ends up short).
    name: label of a progress line after each class (with the ETA over the images wanted); '' for none.
    finished: class -> its `ClassDraw` from an earlier, stopped call, or None (drawn here).
    on_class: called with each class drawn here, as soon as it is done (to keep it).

  Returns:
    (uint8 images [sum(add), ...], int32 labels, {'acceptance_rate': [per class], 'filled': [per class]}).
  """
  out_images, out_labels, acceptance, filled = [], [], [], []
  earlier = {c: finished(c) for c, a in enumerate(add) if a > 0} if finished is not None else {}
  earlier = {c: d for c, d in earlier.items() if d is not None}
  tracker = progress.Progress(int(sum(int(a) for a in add)), start=sum(len(d.images) for d in earlier.values()),
                              name=name) if name else None
  for c, wanted in enumerate(int(a) for a in add):
    if wanted <= 0:
      acceptance.append(None)
      filled.append(0)
      continue
    draw = earlier.get(c)
    if draw is None:
      draw = _draw_class(sample, c, wanted, confidence, threshold, max_rounds)
      if on_class is not None:
        on_class(c, draw)
    acceptance.append(draw.acceptance)
    filled.append(draw.filled)
    out_images.append(draw.images)
    out_labels.append(np.full(len(draw.images), c, np.int32))
    if tracker is not None:
      done = sum(len(k) for k in out_images)
      eta = tracker.eta(done)
      logging.info("[%s] %d/%d images; class %d: acceptance %.1f%%, %d filled with the best rejects | ETA %s", name,
                   done, tracker.total, c, 100.0 * draw.acceptance, draw.filled,
                   progress.format_duration(eta) if eta == eta else "?")
  if not out_images:  # no class needs images: an empty set of the right shape
    empty = sample(0, 0)
    return empty, np.zeros((0,), np.int32), {"acceptance_rate": acceptance, "filled": filled}
  return np.concatenate(out_images), np.concatenate(out_labels), {"acceptance_rate": acceptance,
                                                                   "filled": filled}


def combination_additions(added: tuple[np.ndarray, np.ndarray], wanted: Sequence[int]
                          ) -> tuple[np.ndarray, np.ndarray]:
  """The first `wanted[c]` images of each class of a generator's additions (drawn i.i.d., so a fair subset)."""
  images, labels = added
  rows = np.concatenate([np.flatnonzero(labels == c)[:int(n)] for c, n in enumerate(wanted)] or [np.zeros(0, int)])
  if any(int(np.sum(labels == c)) < int(n) for c, n in enumerate(wanted)):
    raise ValueError("the generator's synthetic set has fewer images than the combination needs; "
                     "config.combination_ratio must not exceed config.synthetic_ratio")
  rows = np.sort(rows)
  return images[rows], labels[rows]


def training_set(method: Method, real: tuple[np.ndarray, np.ndarray], added: tuple[np.ndarray, np.ndarray] | None,
                 *, num_classes: int, fill_remainder: str, seed: int):
  """A method's classifier training set and inverse-frequency loss weights (None: unweighted).

  The real imbalanced set plus the method's added images. A method that adds
  images with cross-entropy and leaves a gap (synthetic_ratio < 1) has it closed by
  `fill_remainder`: inverse-frequency weights over the augmented set, or duplicates
  of real images drawn by imbalanced-learn; a combination leaves the gap to its
  loss. The `class_weight` loss part weighs the final set by inverse class frequency.

  Returns:
    (uint8 images, int32 labels, class weights [C] or None).
  """
  images, labels = real
  fill = fill_remainder if method.loss.name == "cross_entropy" else "none"
  if method.adds_images:
    images = np.concatenate([images, added[0]])
    labels = np.concatenate([labels, added[1]]).astype(np.int32)
    if fill == "random_oversample":
      real_counts = np.bincount(real[1], minlength=num_classes)
      missing = remainder_counts(real_counts, np.bincount(labels, minlength=num_classes))
      extra_images, extra_labels = imblearn_synthetic("random_oversample", *real, missing, seed)
      images = np.concatenate([images, extra_images])
      labels = np.concatenate([labels, extra_labels]).astype(np.int32)
  weighted = method.loss.weights == "inverse_frequency" or (method.adds_images and fill == "class_weight")
  return images, labels, inverse_frequency_weights(labels, num_classes) if weighted else None
