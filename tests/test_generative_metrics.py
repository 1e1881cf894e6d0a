"""FID, KID and precision/recall against closed forms."""
import numpy as np
import pytest

from gan_jax import generative_metrics as gm


def test_fid_of_identical_sets_is_zero_and_of_known_gaussians_matches_the_closed_form():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(4000, 3))
  assert gm.fid(features, features) == pytest.approx(0.0, abs=1e-9)
  # Diagonal Gaussians: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b, shift = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0]), np.array([1.0, -2.0, 0.5])
  x = rng.normal(size=(200_000, 3)) * np.sqrt(a)
  y = rng.normal(size=(200_000, 3)) * np.sqrt(b) + shift
  expected = np.sum(shift ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert gm.fid(x, y) == pytest.approx(expected, rel=0.02)


def test_mmd_of_point_masses_is_the_kernel_expression():
  a, b = np.full((5, 4), 0.5), np.full((7, 4), -1.0)
  k = lambda u, v: (np.dot(u, v) / 4 + 1.0) ** 3
  expected = k(a[0], a[0]) + k(b[0], b[0]) - 2 * k(a[0], b[0])
  assert gm.mmd2_unbiased(a, b) == pytest.approx(expected)


def test_kid_is_unbiased_where_the_plain_estimate_is_not():
  rng = np.random.default_rng(1)
  draws, plain = [], []
  for _ in range(200):
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    draws.append(gm.mmd2_unbiased(x, y))
    both = np.concatenate([x, y])
    k = gm.polynomial_kernel(both, both)
    plain.append(k[:20, :20].mean() + k[20:, 20:].mean() - 2 * k[:20, 20:].mean())  # diagonals included
  standard_error = np.std(draws) / np.sqrt(len(draws))
  assert abs(np.mean(draws)) < 3 * standard_error
  assert np.mean(plain) > 10 * standard_error  # the biased estimate is positive for equal distributions
  mean, std = gm.kid(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 2.0, num_subsets=10, subset_size=100)
  assert mean > 10 * std > 0


def test_precision_and_recall_of_identical_disjoint_and_collapsed_sets():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(500, 2))
  assert gm.precision_recall(real, real) == (1.0, 1.0)
  assert gm.precision_recall(real, real + 100.0) == (0.0, 0.0)
  # A generator that collapsed onto one mode: its samples are real-looking, but they cover little.
  collapsed = rng.normal(size=(500, 2)) * 0.05 + real[0]
  precision, recall = gm.precision_recall(real, collapsed)
  assert precision > 0.9 and recall < 0.1
  with pytest.raises(ValueError, match="needs more than 3 features"):
    gm.precision_recall(real[:3], real)
