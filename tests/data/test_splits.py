"""The splits of a run: one cut of the train split, seeded test subsets, the imbalanced test subset."""
import numpy as np
import pytest

from gan_jax.data import imbalance
from gan_jax.data import splits


def test_seeded_subset_is_sorted_deterministic_and_whole_when_unlimited():
  first = splits.seeded_subset(1000, 50, seed=3)
  assert len(first) == 50 and np.all(np.diff(first) > 0)
  np.testing.assert_array_equal(first, splits.seeded_subset(1000, 50, seed=3))
  assert not np.array_equal(first, splits.seeded_subset(1000, 50, seed=4))
  assert not np.array_equal(first, splits.seeded_subset(1000, 50, seed=3, tag=1))
  np.testing.assert_array_equal(splits.seeded_subset(10, 0, seed=0), np.arange(10))
  np.testing.assert_array_equal(splits.seeded_subset(10, 99, seed=0), np.arange(10))


def test_imbalance_spec_from_the_flat_config_fields():
  spec = imbalance.ImbalanceSpec.from_fields("step", 0.0, 0, "1, 3", 0.5)
  assert spec == imbalance.ImbalanceSpec("step", None, None, (1, 3), 0.5) and spec.active
  assert spec.counts([10, 10, 10, 10]) == [10, 5, 10, 5]
  assert not imbalance.ImbalanceSpec.from_fields("none").active
  with pytest.raises(ValueError, match="does not take rho"):
    imbalance.ImbalanceSpec.from_fields("deepsmote_100", rho=10.0).counts([5000] * 10)


def test_load_splits_cuts_once_and_keeps_the_full_split(idx_dir):
  spec = imbalance.ImbalanceSpec("deepsmote_100")
  data = splits.load_splits("mnist", imbalance_spec=spec, seed=0, idx_dir=str(idx_dir), test_examples=2000,
                            test_profile="deepsmote_test")
  assert data.train_counts().tolist() == [4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40]
  assert len(data.full_train[1]) == 60_000 and data.image_shape == (28, 28, 1)
  assert len(data.test[1]) == 2000
  # The imbalanced test subset comes from the same test images; classes short of the profile keep all they have.
  wanted = np.asarray(imbalance.profile_counts("deepsmote_test", [10**6] * 10))
  available = np.bincount(data.test[1], minlength=10)
  assert np.bincount(data.imbalanced_test[1], minlength=10).tolist() == np.minimum(wanted, available).tolist()
  again = splits.load_splits("mnist", imbalance_spec=spec, seed=0, idx_dir=str(idx_dir), with_test=False)
  np.testing.assert_array_equal(again.train[0], data.train[0])
  assert again.test is None and again.imbalanced_test is None


def test_long_tail_profiles_follow_cao_et_al():
  counts = imbalance.profile_counts("lt_100", [6000] * 10)
  assert counts[0] == 5000 and counts[-1] == 50
  assert counts == imbalance.profile_counts("exponential", [6000] * 10, rho=100.0, n_max=5000)
  assert imbalance.profile_counts("lt_10", [6000] * 10)[-1] == 500


def test_validation_set_is_balanced_and_disjoint_from_the_training_subset(idx_dir):
  spec = imbalance.ImbalanceSpec("lt_100")
  data = splits.load_splits("mnist", imbalance_spec=spec, seed=1, idx_dir=str(idx_dir), with_test=False,
                            validation_per_class=100)
  assert np.bincount(data.validation[1], minlength=10).tolist() == [100] * 10
  train_rows = {r.tobytes() for r in data.train[0].reshape(len(data.train[0]), -1)}
  # No validation image is one of the training images (MNIST has no exact duplicates across these).
  assert not any(r.tobytes() in train_rows for r in data.validation[0].reshape(1000, -1))
  with pytest.raises(ValueError, match="fewer than config.validation_per_class=1000"):
    splits.load_splits("mnist", imbalance_spec=spec, seed=1, idx_dir=str(idx_dir), with_test=False,
                       validation_per_class=1000)
