"""How each method's classifier training set is assembled, including config.fill_remainder."""
import numpy as np
import pytest

from experiments.configs import imbalance as imbalance_config
from gan_jax.imbalance_benchmark import methods
from gan_jax.imbalance_benchmark import pipeline

COUNTS = (40, 20, 8)


@pytest.fixture
def setup(tmp_path):
  rng = np.random.default_rng(0)
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(COUNTS)]).astype(np.int32)
  images = rng.integers(0, 256, size=(len(labels), 4, 4, 1)).astype(np.uint8)
  ds = {"train": (images, labels), "num_classes": 3}
  paths = pipeline._Paths(str(tmp_path))  # pylint: disable=protected-access
  add = methods.synthetic_counts(COUNTS, 0.25)  # [0, 5, 8]
  synthetic_labels = np.repeat(np.arange(3), add).astype(np.int32)
  # Generated images are all 255: distinguishable from the random real ones.
  pipeline.save_arrays(paths.synthetic("cgan"), image=np.full((len(synthetic_labels), 4, 4, 1), 255, np.uint8),
                       label=synthetic_labels)
  config = imbalance_config.get_config("smoke")
  return config, paths, ds, add


def test_no_fill_keeps_the_gap(setup):
  config, paths, ds, add = setup
  images, labels, weights = pipeline.classifier_training_set("cgan", config, paths, ds)
  assert weights is None
  np.testing.assert_array_equal(np.bincount(labels), np.add(COUNTS, add))
  assert len(images) == len(labels)


def test_class_weight_fill_gives_every_class_the_same_total_weight(setup):
  config, paths, ds, _ = setup
  config.fill_remainder = "class_weight"
  _, labels, weights = pipeline.classifier_training_set("cgan", config, paths, ds)
  totals = np.bincount(labels) * weights
  np.testing.assert_allclose(totals, totals[0], rtol=1e-6)
  assert weights[2] > weights[1] > weights[0]


def test_random_oversample_fill_tops_up_with_real_duplicates(setup):
  config, paths, ds, add = setup
  config.fill_remainder = "random_oversample"
  images, labels, weights = pipeline.classifier_training_set("cgan", config, paths, ds)
  assert weights is None
  np.testing.assert_array_equal(np.bincount(labels), [40, 40, 40])
  real_images, real_labels = ds["train"]
  extra = slice(len(real_labels) + int(np.sum(add)), None)
  for image, label in zip(images[extra], labels[extra]):
    assert any(np.array_equal(image, real) for real in real_images[real_labels == label])
  # Deterministic: the same config draws the same duplicates.
  again, _, _ = pipeline.classifier_training_set("cgan", config, paths, ds)
  np.testing.assert_array_equal(again, images)


def test_fill_does_not_touch_methods_without_images(setup):
  config, paths, ds, _ = setup
  config.fill_remainder = "random_oversample"
  _, labels, weights = pipeline.classifier_training_set("none", config, paths, ds)
  assert weights is None and np.bincount(labels).tolist() == list(COUNTS)
  _, _, weights = pipeline.classifier_training_set("class_weight", config, paths, ds)
  np.testing.assert_allclose(np.bincount(ds["train"][1]) * weights, len(ds["train"][1]) / 3, rtol=1e-6)


def test_bad_fill_is_refused_by_validation(setup):
  config, _, _, _ = setup
  config.fill_remainder = "smote"
  with pytest.raises(ValueError, match="fill_remainder"):
    pipeline.validate_config(config)
