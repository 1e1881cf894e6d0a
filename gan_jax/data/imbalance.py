"""Deterministic class-imbalanced subsets of a labelled split (NumPy only).

A profile turns the per-class image counts of a split into the counts to keep;
`make_imbalanced` then picks that many images of each class. The DeepSMOTE
profiles follow Dablain, Krawczyk and Chawla (2022), whose imbalanced MNIST and
Fashion-MNIST keep 4000, 2000, ..., 40 training images per class.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

_FIXED_PROFILES = {
    "deepsmote_100": (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40),
    "deepsmote_test": (1000, 500, 250, 187, 125, 87, 50, 25, 15, 10),
}
# The long-tail protocol of Cao et al. (NeurIPS 2019): exponential counts from n_max = 5000
# down to 5000 / rho for the last class (CIFAR-10-LT with rho = 100 keeps 5000 ... 50).
LONG_TAIL_N_MAX = 5000
AS_IS = "as_is"
_LONG_TAIL_PROFILES = {"lt_10": 10.0, "lt_50": 50.0, "lt_100": 100.0}
# The keyword parameters each named profile needs; anything else passed is an error
# because a silently ignored `rho` would make a run look imbalanced when it is not.
_PROFILE_PARAMS = {
    "balanced": (),
    # A source that is imbalanced already (a user's folder): its own counts, nothing cut.
    AS_IS: (),
    **{name: () for name in _FIXED_PROFILES},
    **{name: () for name in _LONG_TAIL_PROFILES},
    "exponential": ("rho", "n_max"),
    "step": ("minority_classes", "fraction"),
}
PROFILES = tuple(sorted(_PROFILE_PARAMS))


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Number of images of each class.

  Args:
    labels: integer labels, any shape.
    num_classes: length of the result.

  Returns:
    int64 [num_classes].

  Raises:
    ValueError: a label lies outside [0, num_classes).
  """
  labels = np.asarray(labels).reshape(-1)
  _check_labels(labels, num_classes)
  return np.bincount(labels, minlength=num_classes).astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels.min() if labels.min() < 0 else labels.max()
    raise ValueError(f"label {bad} is out of range [0, {num_classes})")


def _parse_explicit(profile: str | Sequence[int]) -> list[int] | None:
  """The counts of an explicit profile (a sequence or a '4000,2000,...' string), else None."""
  if isinstance(profile, str):
    parts = [p.strip() for p in profile.split(",") if p.strip()]
    # Signed integers count as explicit counts, so '-5,10' reaches the positivity check.
    if not parts or not all(p.lstrip("+-").isdigit() for p in parts):
      return None
    profile = parts
  return [int(c) for c in profile]


def _exponential(num_classes: int, rho: float, n_max: int) -> list[int]:
  """n_i = round(n_max * rho^(-i / (C - 1))): n_max images for class 0, n_max / rho for the last."""
  if rho is None or n_max is None:
    raise ValueError(f"profile 'exponential' needs rho (>= 1) and n_max (> 0), got rho={rho}, n_max={n_max}")
  if rho < 1:
    raise ValueError(f"profile 'exponential' needs rho >= 1, got rho={rho}")
  if n_max <= 0:
    raise ValueError(f"profile 'exponential' needs n_max > 0, got n_max={n_max}")
  if num_classes == 1:
    return [int(n_max)]
  return [int(round(n_max * rho ** (-i / (num_classes - 1)))) for i in range(num_classes)]


def _step(available: np.ndarray, minority_classes: Sequence[int] | None, fraction: float | None) -> list[int]:
  """Minority classes keep round(fraction * available) images, the others all of theirs."""
  if minority_classes is None or fraction is None:
    raise ValueError(f"profile 'step' needs minority_classes and fraction, "
                     f"got minority_classes={minority_classes}, fraction={fraction}")
  if not 0 < fraction <= 1:
    raise ValueError(f"profile 'step' needs fraction in (0, 1], got fraction={fraction}")
  num_classes = len(available)
  for c in minority_classes:
    if not 0 <= c < num_classes:
      raise ValueError(f"profile 'step': minority class {c} is out of range [0, {num_classes})")
  minority = set(int(c) for c in minority_classes)
  return [int(round(fraction * n)) if c in minority else int(n) for c, n in enumerate(available)]


@dataclasses.dataclass(frozen=True)
class ImbalanceSpec:
  """How a split is cut into an imbalanced training set.

  Attributes:
    profile: '', 'none' or 'as_is' keeps every image; otherwise a name from `PROFILES` or
      explicit counts ('4000,2000,...').
    rho: 'exponential': n_max / n_min.
    n_max: 'exponential': images of class 0.
    minority_classes: 'step': the classes that are cut.
    fraction: 'step': the share of each minority class kept.
  """
  profile: str = "none"
  rho: float | None = None
  n_max: int | None = None
  minority_classes: tuple[int, ...] | None = None
  fraction: float | None = None

  @classmethod
  def from_fields(cls, profile: str, rho: float = 0.0, n_max: int = 0, minority_classes: str = "",
                  fraction: float = 0.0) -> "ImbalanceSpec":
    """From the flat config fields (imbalance_rho, ...), where zero or empty means unset."""
    minority = [int(c) for c in str(minority_classes or "").split(",") if c.strip()]
    return cls(str(profile), rho or None, n_max or None, tuple(minority) or None, fraction or None)

  @property
  def active(self) -> bool:
    return self.profile not in ("", "none", AS_IS)

  def counts(self, available: Sequence[int] | np.ndarray) -> list[int]:
    """The images to keep per class (see `profile_counts`)."""
    return profile_counts(self.profile, available, rho=self.rho, n_max=self.n_max,
                          minority_classes=self.minority_classes, fraction=self.fraction)


def profile_counts(profile: str | Sequence[int], available: Sequence[int] | np.ndarray, **params: Any) -> list[int]:
  """The number of images of each class to keep under an imbalance profile.

  Args:
    profile: one of `PROFILES`, or explicit counts (a sequence of ints, or a
      comma-separated string such as '4000,2000,1000').
    available: images available per class, e.g. `class_counts(labels, 10)`; its
      length is the number of classes.
    **params: the named profile's parameters: `rho` (>= 1) and `n_max` for
      'exponential'; `minority_classes` and `fraction` (in (0, 1]) for 'step'.

  Returns:
    One count per class. Counts are not checked against `available`;
    `make_imbalanced` rejects counts a class cannot provide.

  Raises:
    ValueError: unknown profile name, a parameter the profile does not take or
      lacks, or a profile whose length differs from the number of classes.
  """
  available = np.asarray(available, dtype=np.int64).reshape(-1)
  num_classes = len(available)
  explicit = _parse_explicit(profile)
  name = "explicit" if explicit is not None else profile
  if explicit is None and name not in _PROFILE_PARAMS:
    raise ValueError(f"Unknown imbalance profile '{profile}'; choose one of: {', '.join(PROFILES)}, "
                     f"or give explicit counts")
  allowed = _PROFILE_PARAMS.get(name, ())
  extra = sorted(k for k, v in params.items() if v is not None and k not in allowed)
  if extra:
    raise ValueError(f"profile '{name}' does not take {', '.join(extra)}; it takes: {', '.join(allowed) or 'nothing'}")
  if explicit is not None:
    counts = explicit
  elif name in _FIXED_PROFILES:
    counts = list(_FIXED_PROFILES[name])
  elif name in _LONG_TAIL_PROFILES:
    counts = _exponential(num_classes, _LONG_TAIL_PROFILES[name], LONG_TAIL_N_MAX)
  elif name == "exponential":
    counts = _exponential(num_classes, params.get("rho"), params.get("n_max"))
  elif name == "step":
    counts = _step(available, params.get("minority_classes"), params.get("fraction"))
  else:  # balanced, as_is: every image
    counts = [int(n) for n in available]
  if len(counts) != num_classes:
    raise ValueError(f"profile '{name}' has {len(counts)} counts but the data has {num_classes} classes")
  return counts


def make_imbalanced(labels: np.ndarray, counts: Sequence[int], seed: int, *,
                    num_classes: int | None = None) -> np.ndarray:
  """Indices of a random subset with exactly `counts[c]` images of class c.

  Each class draws from its own generator `default_rng([seed, c])`, so changing
  one class's count leaves the other classes' picks unchanged, and the picks for
  a smaller count are a subset of those for a larger one.

  Args:
    labels: integer labels [N].
    counts: images to keep per class; one positive count per class.
    seed: non-negative random seed; the same seed gives the same indices.
    num_classes: number of classes (default: max label + 1).

  Returns:
    Sorted int64 indices into `labels`.

  Raises:
    ValueError: wrong number of counts, a count <= 0, or a count larger than the
      number of images of that class.
  """
  labels = np.asarray(labels).reshape(-1)
  if not labels.size:
    raise ValueError("labels is empty; there is nothing to subsample")
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  _check_labels(labels, num_classes)
  counts = [int(c) for c in counts]
  if len(counts) != num_classes:
    raise ValueError(f"got {len(counts)} counts for {num_classes} classes; give one count per class")
  if seed < 0:
    raise ValueError(f"seed must be non-negative, got {seed}")
  chosen = []
  for c, count in enumerate(counts):
    members = np.flatnonzero(labels == c)
    if count <= 0:
      raise ValueError(f"count for class {c} must be positive, got {count}")
    if count > len(members):
      raise ValueError(f"class {c} has {len(members)} images, asked for {count}")
    order = np.random.default_rng([seed, c]).permutation(len(members))
    chosen.append(members[order[:count]])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def balance_by_repetition(labels: np.ndarray, seed: int) -> np.ndarray:
  """Row indices that repeat each class's rows until every present class has max-count rows.

  Uniform batches over the result are class-balanced in expectation, so a GAN trained on an
  imbalanced set sees its rare classes as often as its frequent ones (each rare image more
  often). Every row appears floor(n_max / n_c) or one more time; which rows get the extra
  copy is a seeded choice, so the result is deterministic.

  Returns:
    int64 indices into `labels`, grouped by class (batch order comes from `batch_order`).
  """
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  target = int(counts.max()) if len(counts) else 0
  rng = np.random.default_rng([int(seed), 7])
  picked = []
  for c in classes:
    rows = np.flatnonzero(labels == c)
    repeats, extra = divmod(target, len(rows))
    picked.append(np.concatenate([np.tile(rows, repeats), rng.choice(rows, extra, replace=False)]))
  return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)
