"""The seed policy of the imbalance benchmark: every random stream derives from config.seed here, by name.

The offsets keep each model's stream apart from the others (and are fixed: they
decide which numbers earlier runs computed). Classifier seeds are shared across
methods, so per-seed differences between methods are paired.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

EVALUATOR_OFFSET = 10_000
FILTER_OFFSET = 20_000
CAS_OFFSET = 30_000
# default_rng([seed, REAL_FLOOR_TAG]) picks the real train images of the Frechet-distance floor.
REAL_FLOOR_TAG = 0xFD
# Generator draws: the synthetic training images and the quality samples are separate streams.
SYNTHETIC_STREAM = 1
QUALITY_STREAM = 2


def classifier(seed: int, seed_index: int) -> int:
  """The k-th classifier seed; the same for every method."""
  return 1000 * int(seed) + seed_index


def evaluator(seed: int) -> int:
  return EVALUATOR_OFFSET + int(seed)


def filter_classifier(seed: int) -> int:
  return FILTER_OFFSET + int(seed)


def cas(seed: int) -> int:
  return CAS_OFFSET + int(seed)


def real_floor_rng(seed: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), REAL_FLOOR_TAG])


def keyed(generate: Callable[[int, int, jax.Array], np.ndarray], seed: int,
          stream: int) -> Callable[[int, int], np.ndarray]:
  """(class, n) -> images, each call with a fresh key fold_in(seed, stream, class, call number)."""
  calls: dict[int, int] = {}
  base = jax.random.fold_in(jax.random.PRNGKey(seed), stream)

  def draw(c: int, n: int) -> np.ndarray:
    calls[c] = calls.get(c, 0) + 1
    return generate(c, n, jax.random.fold_in(jax.random.fold_in(base, c), calls[c]))

  return draw
