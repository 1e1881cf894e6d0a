"""Sample-quality metrics on feature sets: FID, KID and precision/recall (NumPy, float64).

* FID (Heusel et al., NeurIPS 2017): the Frechet distance between Gaussians fitted to the two
  feature sets (`gan_jax.evaluation.frechet_distance`).
* KID (Binkowski et al., ICLR 2018): the unbiased estimate of the squared MMD with the cubic
  polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets (mean and std),
  which, unlike FID, is unbiased for small sample sizes.
* Precision and recall (Kynkaanniemi et al., NeurIPS 2019): each set's manifold is the union of
  balls around its points with the radius to their k-th nearest neighbour; precision is the
  share of generated points inside the real manifold, recall the share of real points inside
  the generated one.

Features are usually Inception-v3 pool features (`gan_jax.inception`); any [N, D] arrays work.
"""
from __future__ import annotations

import numpy as np

from gan_jax import evaluation


def fid(real: np.ndarray, fake: np.ndarray) -> float:
  """FID between two feature sets [N, D] and [M, D]."""
  return evaluation.features_frechet_distance(real, fake)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(a . b / d + 1)^3 for rows of a [N, D] and b [M, D]: the KID kernel."""
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(a: np.ndarray, b: np.ndarray) -> float:
  """The unbiased squared MMD of two samples [m, D] and [n, D] (m, n >= 2) under `polynomial_kernel`."""
  m, n = len(a), len(b)
  k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
  within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
  within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
  return float(within_a + within_b - 2.0 * k_ab.mean())


def kid(real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """KID: mean and standard deviation of `mmd2_unbiased` over random subsets of both sets.

  Subsets are drawn without replacement within a subset, of min(subset_size, N, M) rows
  (Binkowski et al.'s protocol: 100 subsets of 1,000).
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  size = min(subset_size, len(real), len(fake))
  if size < 2:
    raise ValueError(f"KID needs at least 2 features per set, got {len(real)} and {len(fake)}")
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                          fake[rng.choice(len(fake), size, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
  """Squared distance of each row to its k-th nearest other row."""
  distances = _squared_distances(features, features)
  return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def coverage_share(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
  """The share of `points` inside at least one ball (centre, squared radius)."""
  inside = _squared_distances(points, centres) <= radii[None, :]
  return float(np.mean(inside.any(axis=1)))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al., 2019) with k-th neighbour radii (k = 3 there)."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"precision/recall with k={k} needs more than {k} features per set, got {len(real)} and "
                     f"{len(fake)}")
  precision = coverage_share(fake, real, knn_radii(real, k))
  recall = coverage_share(real, fake, knn_radii(fake, k))
  return precision, recall
