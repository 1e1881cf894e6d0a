"""Rebalancing methods: method parsing, synthetic counts, imbalanced-learn sets and the confidence filter."""
import json
import os

import numpy as np
import pytest

from gan_jax.protocols.imbalance import methods


def test_parse_methods_canonical_order_and_errors():
  assert methods.parse_methods("cgan, none,smote") == ["none", "smote", "cgan"]
  assert methods.parse_methods(("acgan",)) == ["acgan"]
  with pytest.raises(ValueError, match="Unknown method.*bagan.*choose from"):
    methods.parse_methods("none,bagan")
  with pytest.raises(ValueError, match="twice"):
    methods.parse_methods("none,none")
  with pytest.raises(ValueError, match="Unknown method"):
    methods.parse_methods("")


def test_synthetic_counts_bring_classes_to_n_max():
  np.testing.assert_array_equal(methods.synthetic_counts([100, 40, 10], 1.0), [0, 60, 90])
  np.testing.assert_array_equal(methods.synthetic_counts([100, 40, 10], 0.5), [0, 30, 45])
  with pytest.raises(ValueError, match="synthetic_ratio"):
    methods.synthetic_counts([1, 2], -1.0)


def _toy_set(rng, counts=(30, 12, 7)):
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  # Class c images have pixel values in [60c, 60c + 50]: class membership is visible in the pixels.
  images = np.stack([rng.integers(60 * c, 60 * c + 51, size=(4, 4, 1)) for c in labels]).astype(np.uint8)
  return images, labels


def test_random_oversample_adds_copies_of_same_class_images():
  rng = np.random.default_rng(0)
  images, labels = _toy_set(rng)
  add = methods.synthetic_counts(np.bincount(labels), 1.0)
  new_images, new_labels = methods.imblearn_synthetic("random_oversample", images, labels, add, seed=0)
  np.testing.assert_array_equal(np.bincount(new_labels, minlength=3), add)
  for image, label in zip(new_images, new_labels):
    assert any(np.array_equal(image, real) for real in images[labels == label])


def test_smote_interpolates_within_the_class():
  rng = np.random.default_rng(1)
  images, labels = _toy_set(rng)
  add = methods.synthetic_counts(np.bincount(labels), 1.0)
  new_images, new_labels = methods.imblearn_synthetic("smote", images, labels, add, seed=0, k_neighbors=5)
  assert new_images.dtype == np.uint8 and new_images.shape[1:] == images.shape[1:]
  np.testing.assert_array_equal(np.bincount(new_labels, minlength=3), add)
  for c in (1, 2):
    made = new_images[new_labels == c]
    assert made.min() >= 60 * c and made.max() <= 60 * c + 50
    # Interpolations, not copies: most synthetic images are new.
    copies = sum(any(np.array_equal(m, r) for r in images[labels == c]) for m in made)
    assert copies < len(made) / 2
  with pytest.raises(ValueError, match="k_neighbors=7.*smallest has 7"):
    methods.imblearn_synthetic("smote", images, labels, add, seed=0, k_neighbors=7)


def test_sample_with_filter_keeps_confident_images_and_fills_the_rest(caplog):
  rng = np.random.default_rng(0)

  def sample(c, n):  # images whose single pixel is the "confidence" the filter will read
    return rng.integers(0, 256, size=(n, 1, 1, 1)).astype(np.uint8)

  def confidence(images, c):
    return images[:, 0, 0, 0] / 255.0 if c == 1 else np.zeros(len(images))

  with caplog.at_level("INFO"):
    images, labels, info = methods.sample_with_filter(sample, [0, 50, 20], confidence, threshold=0.5, max_rounds=4,
                                                      name="synthetic x")
  lines = [r.getMessage() for r in caplog.records]
  assert len(lines) == 2 and lines[0].startswith("[synthetic x] 50/70 images; class 1: acceptance ")
  assert "[synthetic x] 70/70 images; class 2: acceptance 0.0%, 20 filled with the best rejects | ETA 0:00:00" == lines[1]
  np.testing.assert_array_equal(np.bincount(labels, minlength=3), [0, 50, 20])
  assert np.all(images[labels == 1] >= 128)  # every kept class-1 image passed the threshold
  assert 0.3 < info["acceptance_rate"][1] < 0.7
  assert info["acceptance_rate"][2] == 0.0 and info["filled"][2] == 20  # nothing passes: filled with the best
  assert info["acceptance_rate"][0] is None


def _keyed_sample():
  calls = {}

  def sample(c, n):  # like seeds.keyed: a class's draws depend only on the class and its call count
    calls[c] = calls.get(c, 0) + 1
    return np.random.default_rng([c, calls[c]]).integers(0, 256, size=(n, 1, 1, 1)).astype(np.uint8)

  return sample


def _confidence(images, c):
  return images[:, 0, 0, 0] / 255.0 if c != 2 else np.zeros(len(images))


def test_a_stopped_draw_keeps_its_finished_classes_and_the_rerun_equals_one_run(tmp_path):
  add = [0, 30, 20, 25]
  straight = methods.sample_with_filter(_keyed_sample(), add, _confidence, threshold=0.6)
  store = methods.ClassDrawStore(str(tmp_path / "classes"))

  class Stop(Exception):
    pass

  def keep_then_stop(c, draw):
    store.keep(c, draw)
    if c == 2:
      raise Stop()

  with pytest.raises(Stop):
    methods.sample_with_filter(_keyed_sample(), add, _confidence, threshold=0.6, on_class=keep_then_stop)
  assert sorted(os.listdir(store.folder)) == ["c1.npz", "c2.npz"] and store.load(3) is None
  redrawn = []
  resumed = methods.sample_with_filter(_keyed_sample(), add, _confidence, threshold=0.6, finished=store.load,
                                       on_class=lambda c, d: redrawn.append(c))
  assert redrawn == [3]
  np.testing.assert_array_equal(resumed[0], straight[0])
  np.testing.assert_array_equal(resumed[1], straight[1])
  assert resumed[2] == straight[2] and straight[2]["filled"][2] == 20  # acceptance and fills kept exactly
  store.clear()
  assert not os.path.exists(store.folder)


def test_sample_without_filter_is_plain_sampling():
  calls = []

  def sample(c, n):
    calls.append((c, n))
    return np.full((n, 2, 2, 1), c, np.uint8)

  images, labels, info = methods.sample_with_filter(sample, [3, 0, 2], None, threshold=0.9)
  assert calls == [(0, 3), (2, 2)]
  np.testing.assert_array_equal(labels, [0, 0, 0, 2, 2])
  assert info["acceptance_rate"] == [1.0, None, 1.0]


def test_remainder_counts_close_the_gap_to_the_real_majority():
  np.testing.assert_array_equal(methods.remainder_counts([100, 40, 10], [100, 55, 32]), [0, 45, 68])
  np.testing.assert_array_equal(methods.remainder_counts([100, 40], [100, 130]), [0, 0])


def test_inverse_frequency_weights():
  labels = np.array([0] * 6 + [1] * 3 + [2])
  weights = methods.inverse_frequency_weights(labels, 3)
  np.testing.assert_allclose(weights, [10 / 18, 10 / 9, 10 / 3], rtol=1e-6)
  # Every class carries the same total weight.
  np.testing.assert_allclose(np.bincount(labels, weights=weights[labels]), [10 / 3] * 3, rtol=1e-6)
  with pytest.raises(ValueError, match="every class present"):
    methods.inverse_frequency_weights(np.array([0, 0, 2]), 3)


@pytest.mark.parametrize("name, data_kind, loss, group", [
    ("none", "real", "cross_entropy", "baseline"),
    ("class_weight", "real", "class_weight", "classic"),
    ("random_oversample", "resample", "cross_entropy", "classic"),
    ("smote", "resample", "cross_entropy", "classic"),
    ("dcgan", "generator", "cross_entropy", "generative"),
    ("cvae", "generator", "cross_entropy", "generative"),
])
def test_each_method_is_a_data_part_and_a_loss_part(name, data_kind, loss, group):
  method = methods.get_method(name)
  assert (method.data.kind, method.loss.name, method.group) == (data_kind, loss, group)
  assert method.adds_images == (data_kind != "real")
  assert method.generator == (name if data_kind == "generator" else None)


def test_combinations_and_methods_that_build_on_plain_cross_entropy():
  assert methods.parse_methods("cgan+drw, crt") == ["none", "crt", "cgan+drw"]  # crt brings none
  assert methods.parse_methods("cvae+logit_adjustment_posthoc") == ["cvae", "cvae+logit_adjustment_posthoc"]
  combo = methods.get_method("cgan+ldam_drw")
  assert (combo.group, combo.generator, combo.loss.kind, combo.loss.head, combo.plain) == (
      "combined", "cgan", "ldam", "cosine", "cgan")
  with pytest.raises(ValueError, match=r"Unknown method.*smote\+drw.*<generator>\+<loss>"):
    methods.parse_methods("smote+drw")
  with pytest.raises(ValueError, match="Unknown method"):
    methods.parse_methods("cgan+class_weight")


def test_a_combination_takes_the_first_images_of_each_class_and_leaves_the_gap_to_its_loss():
  images = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1)
  labels = np.array([1, 2, 1, 2, 1, 2, 2, 2, 1, 2, 2, 2])
  subset_images, subset_labels = methods.combination_additions((images, labels), [0, 2, 3])
  assert subset_labels.tolist() == [1, 2, 1, 2, 2] and subset_images[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 5]
  with pytest.raises(ValueError, match="combination_ratio must not exceed config.synthetic_ratio"):
    methods.combination_additions((images, labels), [0, 5, 1])
  real = (np.zeros((6, 1, 1, 1), np.uint8), np.array([0, 0, 0, 0, 1, 2]))
  _, combined_labels, weights = methods.training_set(methods.get_method("cgan+drw"), real, (subset_images, subset_labels),
                                                     num_classes=3, fill_remainder="random_oversample", seed=0)
  # The fill is for cross-entropy methods only: the combination's loss closes the remaining gap.
  assert np.bincount(combined_labels).tolist() == [4, 3, 4] and weights is None


def test_generator_sections_only_one_run_uses_do_not_block_a_resume():
  from experiments.configs import imbalance as imbalance_config  # pylint: disable=g-import-not-at-top
  from gan_jax import workdir  # pylint: disable=g-import-not-at-top
  from gan_jax.protocols.imbalance import validation  # pylint: disable=g-import-not-at-top
  new = workdir.config_to_dict(imbalance_config.get_config("cpu"))
  old = json.loads(json.dumps(new))
  del old["generators"]["ldm"], old["generators"]["ddpm"]  # a run made before the diffusion generators
  old["generators"]["cvae"]["num_steps"] += 1
  diff = lambda o, n: workdir.config_differences(o, n, validation.RESUMABLE_FIELDS, validation.MIGRATIONS,
                                                 validation.shared_generator_sections)
  # Both runs use the cVAE: its changed section is a conflict; the new sections are not.
  assert [d.split(":")[0] for d in diff(old, new)] == ["generators"]
  old["generators"]["cvae"]["num_steps"] -= 1
  assert diff(old, new) == []
  # A run that adds the ldm method may set its section freely: the old run never trained it.
  new["methods"] += ",ldm"
  new["generators"]["ldm"]["num_steps"] = 7
  assert diff(old, new) == []
