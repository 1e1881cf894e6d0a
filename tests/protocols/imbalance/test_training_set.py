"""How each method's classifier training set and loss weights follow from its record and config.fill_remainder."""
import numpy as np
import pytest

from experiments.configs import imbalance as imbalance_config
from gan_jax.protocols.imbalance import methods
from gan_jax.protocols.imbalance import validation

COUNTS = (40, 20, 8)


@pytest.fixture
def real_and_added():
  rng = np.random.default_rng(0)
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(COUNTS)]).astype(np.int32)
  images = rng.integers(0, 255, size=(len(labels), 4, 4, 1)).astype(np.uint8)
  add = methods.synthetic_counts(COUNTS, 0.25)  # [0, 5, 8]
  added_labels = np.repeat(np.arange(3), add).astype(np.int32)
  # Generated images are all 255: distinguishable from the random real ones (< 255).
  added = (np.full((len(added_labels), 4, 4, 1), 255, np.uint8), added_labels)
  return (images, labels), added, add


def training_set(name, real, added, fill="none"):
  return methods.training_set(methods.get_method(name), real, added, num_classes=3, fill_remainder=fill, seed=0)


def test_no_fill_keeps_the_gap(real_and_added):
  real, added, add = real_and_added
  images, labels, weights = training_set("cgan", real, added)
  assert weights is None
  np.testing.assert_array_equal(np.bincount(labels), np.add(COUNTS, add))
  assert len(images) == len(labels) and np.sum(images.reshape(len(images), -1).min(1) == 255) == add.sum()


def test_class_weight_fill_gives_every_class_the_same_total_weight(real_and_added):
  real, added, _ = real_and_added
  _, labels, weights = training_set("cgan", real, added, fill="class_weight")
  totals = np.bincount(labels) * weights
  np.testing.assert_allclose(totals, totals[0], rtol=1e-6)
  assert weights[2] > weights[1] > weights[0]


def test_random_oversample_fill_tops_up_with_real_duplicates(real_and_added):
  real, added, add = real_and_added
  images, labels, weights = training_set("cgan", real, added, fill="random_oversample")
  assert weights is None
  np.testing.assert_array_equal(np.bincount(labels), [40, 40, 40])
  real_images, real_labels = real
  extra = slice(len(real_labels) + int(np.sum(add)), None)
  for image, label in zip(images[extra], labels[extra]):
    assert any(np.array_equal(image, r) for r in real_images[real_labels == label])
  # Deterministic: the same seed draws the same duplicates.
  again, _, _ = training_set("cgan", real, added, fill="random_oversample")
  np.testing.assert_array_equal(again, images)


def test_fill_does_not_touch_methods_without_images(real_and_added):
  real, _, _ = real_and_added
  _, labels, weights = training_set("none", real, None, fill="random_oversample")
  assert weights is None and np.bincount(labels).tolist() == list(COUNTS)
  _, _, weights = training_set("class_weight", real, None, fill="random_oversample")
  np.testing.assert_allclose(np.bincount(real[1]) * weights, len(real[1]) / 3, rtol=1e-6)


def test_bad_fill_is_refused_by_validation():
  config = imbalance_config.get_config("smoke")
  config.fill_remainder = "smote"
  with pytest.raises(ValueError, match="Unknown fill_remainder 'smote'; choose one of: none, class_weight"):
    validation.validate(config, num_devices=8)
