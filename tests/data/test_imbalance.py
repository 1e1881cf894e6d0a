"""Imbalance profiles and make_imbalanced on the real MNIST labels."""
import numpy as np
import pytest

from gan_jax.data import idx
from gan_jax.data import imbalance

DEEPSMOTE_100 = [4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40]
DEEPSMOTE_TEST = [1000, 500, 250, 187, 125, 87, 50, 25, 15, 10]


@pytest.fixture(scope="module")
def labels(idx_dir):
  return idx.read_idx(idx_dir / "mnist" / "train-labels-idx1-ubyte.gz").astype(np.int32)


@pytest.fixture(scope="module")
def available(labels):
  return imbalance.class_counts(labels, 10)


def test_class_counts(labels, available):
  np.testing.assert_array_equal(available, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  assert available.dtype == np.int64
  np.testing.assert_array_equal(imbalance.class_counts([1, 1, 3], 5), [0, 2, 0, 1, 0])
  with pytest.raises(ValueError, match=r"label 5 is out of range \[0, 5\)"):
    imbalance.class_counts([0, 5], 5)


@pytest.mark.parametrize("profile,want", [("deepsmote_100", DEEPSMOTE_100), ("deepsmote_test", DEEPSMOTE_TEST)])
def test_deepsmote_profiles_on_mnist(labels, available, profile, want):
  counts = imbalance.profile_counts(profile, available)
  assert counts == want
  keep = imbalance.make_imbalanced(labels, counts, seed=0)
  np.testing.assert_array_equal(imbalance.class_counts(labels[keep], 10), want)


def test_indices_are_a_sorted_subset_without_repeats(labels):
  keep = imbalance.make_imbalanced(labels, DEEPSMOTE_100, seed=3)
  assert keep.dtype == np.int64 and len(keep) == sum(DEEPSMOTE_100)
  assert np.all(np.diff(keep) > 0)  # sorted and unique
  assert keep.min() >= 0 and keep.max() < len(labels)


def test_same_seed_same_indices_other_seed_other_subset(labels):
  first = imbalance.make_imbalanced(labels, DEEPSMOTE_100, seed=7)
  np.testing.assert_array_equal(first, imbalance.make_imbalanced(labels, DEEPSMOTE_100, seed=7))
  other = imbalance.make_imbalanced(labels, DEEPSMOTE_100, seed=8)
  assert not np.array_equal(first, other)
  np.testing.assert_array_equal(imbalance.class_counts(labels[other], 10), DEEPSMOTE_100)


def test_smaller_counts_pick_a_subset_and_classes_are_independent(labels):
  big = imbalance.make_imbalanced(labels, DEEPSMOTE_100, seed=1)
  small = imbalance.make_imbalanced(labels, DEEPSMOTE_TEST, seed=1)
  assert np.isin(small, big).all()
  changed = list(DEEPSMOTE_100)
  changed[0] = 10
  other = imbalance.make_imbalanced(labels, changed, seed=1)
  # Only class 0's picks may differ when only class 0's count changes.
  np.testing.assert_array_equal(other[labels[other] != 0], big[labels[big] != 0])


def test_balanced_keeps_everything(labels, available):
  counts = imbalance.profile_counts("balanced", available)
  assert counts == available.tolist()
  np.testing.assert_array_equal(imbalance.make_imbalanced(labels, counts, seed=0), np.arange(len(labels)))


@pytest.mark.parametrize("counts,phrase", [
    (DEEPSMOTE_100[:9], "got 9 counts for 10 classes"),
    (DEEPSMOTE_100[:4] + [0] + DEEPSMOTE_100[5:], "count for class 4 must be positive, got 0"),
    ([-3] + DEEPSMOTE_100[1:], "count for class 0 must be positive, got -3"),
    (DEEPSMOTE_100[:2] + [7000] + DEEPSMOTE_100[3:], "class 2 has 5958 images, asked for 7000"),
])
def test_make_imbalanced_errors(labels, counts, phrase):
  with pytest.raises(ValueError, match=phrase):
    imbalance.make_imbalanced(labels, counts, seed=0)


def test_num_classes_keyword_counts_absent_classes():
  labels = np.array([0, 1, 1, 2, 2, 2])
  with pytest.raises(ValueError, match="got 3 counts for 4 classes"):
    imbalance.make_imbalanced(labels, [1, 1, 1], seed=0, num_classes=4)
  with pytest.raises(ValueError, match="class 3 has 0 images, asked for 1"):
    imbalance.make_imbalanced(labels, [1, 1, 1, 1], seed=0, num_classes=4)
  keep = imbalance.make_imbalanced(labels, [1, 2, 1], seed=0)
  np.testing.assert_array_equal(np.bincount(labels[keep]), [1, 2, 1])


@pytest.mark.parametrize("rho,n_max", [(10.0, 1000), (100.0, 4000), (1.0, 50)])
def test_exponential_profile(rho, n_max):
  counts = imbalance.profile_counts("exponential", [6000] * 10, rho=rho, n_max=n_max)
  assert counts[0] == n_max and counts[-1] == round(n_max / rho)
  assert all(a >= b for a, b in zip(counts, counts[1:]))
  assert counts == [round(n_max * rho ** (-i / 9)) for i in range(10)]


def test_step_profile(available):
  counts = imbalance.profile_counts("step", available, minority_classes=[2, 7], fraction=0.1)
  want = available.tolist()
  want[2], want[7] = round(0.1 * 5958), round(0.1 * 6265)
  assert counts == want == [5923, 6742, 596, 6131, 5842, 5421, 5918, 626, 5851, 5949]


@pytest.mark.parametrize("profile", [[5, 4, 3], (5, 4, 3), "5,4,3", " 5, 4 ,3 "])
def test_explicit_counts(profile):
  assert imbalance.profile_counts(profile, [10, 10, 10]) == [5, 4, 3]


@pytest.mark.parametrize("profile,params,phrase", [
    ("zipf", {}, "Unknown imbalance profile 'zipf'; choose one of: " + ", ".join(imbalance.PROFILES)),
    ("exponential", {"rho": 10.0}, "needs rho .* and n_max .*, got rho=10.0, n_max=None"),
    ("exponential", {"rho": 0.5, "n_max": 100}, "rho >= 1, got rho=0.5"),
    ("exponential", {"rho": 2.0, "n_max": 0}, "n_max > 0, got n_max=0"),
    ("step", {"minority_classes": [1]}, "needs minority_classes and fraction"),
    ("step", {"minority_classes": [1], "fraction": 0.0}, r"fraction in \(0, 1\], got fraction=0.0"),
    ("step", {"minority_classes": [1], "fraction": 1.5}, "got fraction=1.5"),
    ("step", {"minority_classes": [10], "fraction": 0.5}, r"minority class 10 is out of range \[0, 10\)"),
    ("deepsmote_100", {"rho": 10.0}, "profile 'deepsmote_100' does not take rho; it takes: nothing"),
    ("step", {"n_max": 5, "fraction": 0.5, "minority_classes": [0]}, "does not take n_max; it takes: minority_classes"),
])
def test_profile_errors(profile, params, phrase):
  with pytest.raises(ValueError, match=phrase):
    imbalance.profile_counts(profile, [6000] * 10, **params)


def test_profile_length_must_match_the_classes():
  with pytest.raises(ValueError, match="profile 'deepsmote_100' has 10 counts but the data has 3 classes"):
    imbalance.profile_counts("deepsmote_100", [100, 100, 100])
  with pytest.raises(ValueError, match="profile 'explicit' has 2 counts but the data has 3 classes"):
    imbalance.profile_counts([1, 2], [100, 100, 100])


def test_balance_by_repetition_equalises_classes_with_even_repeats():
  labels = np.array([0] * 10 + [1] * 3 + [2] * 4)
  rows = imbalance.balance_by_repetition(labels, seed=0)
  assert np.bincount(labels[rows]).tolist() == [10, 10, 10]
  copies = np.bincount(rows, minlength=len(labels))
  assert copies[:10].tolist() == [1] * 10
  assert sorted(set(copies[10:13])) == [3, 4]  # 10 = 3 + 3 + 4: each class-1 row 3 or 4 times
  assert sorted(copies[13:].tolist()) == [2, 2, 3, 3]
  np.testing.assert_array_equal(rows, imbalance.balance_by_repetition(labels, seed=0))
  assert not np.array_equal(rows, imbalance.balance_by_repetition(labels, seed=1))


@pytest.mark.parametrize("name,rho", [("lt_10", 10), ("lt_50", 50), ("lt_100", 100)])
def test_long_tail_profiles_follow_cao_et_al(name, rho):
  counts = imbalance.profile_counts(name, [6000] * 10)
  expected = [round(5000 * rho ** (-i / 9)) for i in range(10)]  # n_i = n_max * rho^(-i / (C - 1))
  assert list(counts) == expected and counts[0] == 5000 and counts[-1] == 5000 // rho
  labels = np.repeat(np.arange(10), 4000)  # a split without n_max images of the head class
  with pytest.raises(ValueError, match="class 0 has 4000 images, asked for 5000"):
    imbalance.make_imbalanced(labels, counts, seed=0)
