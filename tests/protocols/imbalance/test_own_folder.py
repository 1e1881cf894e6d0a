"""The imbalance benchmark on a user's folder, used as it is: MNIST digits written as PNG files."""
import os

import numpy as np
import pytest
from PIL import Image

from experiments.configs import imbalance as imbalance_config
from gan_jax import fs
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.protocols.imbalance import pipeline
from gan_jax.protocols.imbalance import validation

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices).
MESH_DEVICES = 2

COUNTS = [60, 30, 20, 15, 12, 10, 10, 10, 10, 10]  # already imbalanced, as users bring it
METHODS = "none,class_weight,random_oversample,logit_adjustment,balanced_softmax"


def _digit_folder(root, idx_dir):
  """28x28 grayscale PNGs of real MNIST digits, COUNTS[d] in folder <d>/ (no test/ tree)."""
  images, labels = sources.load_arrays("mnist", "train", idx_dir=idx_dir)
  for digit, count in enumerate(COUNTS):
    os.makedirs(os.path.join(root, str(digit)))
    for i, row in enumerate(np.flatnonzero(labels == digit)[:count]):
      Image.fromarray(images[row, :, :, 0]).save(os.path.join(root, str(digit), f"{i:04d}.png"))
  return root


def _config(root, **overrides):
  config = imbalance_config.get_config("smoke")
  config.dataset, config.profile, config.image_size, config.channels = f"folder:{root}", "as_is", 32, 3
  config.methods, config.validation_per_class, config.test_examples = METHODS, 0, 0
  for key, value in overrides.items():
    config[key] = value
  return config


def test_as_is_folder_runs_every_metric_on_its_own_test_split(tmp_path, idx_dir):
  root = _digit_folder(str(tmp_path / "digits"), idx_dir)
  workdir = str(tmp_path / "run")
  results = pipeline.run_benchmark(_config(root), workdir, idx_dir=str(idx_dir))
  held_out = [max(1, round(0.2 * n)) for n in COUNTS]
  assert results["train_counts"] == [n - t for n, t in zip(COUNTS, held_out)]  # nothing cut
  assert results["test_counts"] == {"as_is": held_out}  # no imbalanced test subset
  assert list(results["verdict"]) == ["as_is"] and results["verdict"]["as_is"]["loss_vs_classic"]
  for entry in results["methods"].values():
    assert set(entry) >= {"as_is"} and not {"balanced", "imbalanced"} & set(entry)
    assert 0 <= entry["as_is"]["balanced_accuracy"]["mean"] <= 100
  text = fs.read_text(fs.join(workdir, "results.md"))
  assert "test split as it is (profile as_is" in text and "balanced test set" not in text
  assert splits.read_class_names(workdir) == tuple(str(d) for d in range(10))
  cached = os.listdir(splits.data_dir(workdir))
  assert any(n.startswith("train-") and n.endswith(".npz") for n in cached)
  assert os.path.getsize(os.path.join(workdir, "per_class_recall.png")) > 1000


def test_as_is_with_a_validation_set_is_refused_in_one_line(tmp_path, idx_dir):
  config = _config(_digit_folder(str(tmp_path / "digits"), idx_dir), validation_per_class=5)
  with pytest.raises(ValueError, match="profile as_is trains on every train image") as info:
    validation.validate(config, 8)
  assert "\n" not in str(info.value)


def test_inception_metrics_on_without_weights_is_refused_before_any_stage(tmp_path, idx_dir, monkeypatch):
  monkeypatch.delenv("GAN_JAX_FID_WEIGHTS", raising=False)
  root = _digit_folder(str(tmp_path / "digits"), idx_dir)
  with pytest.raises(ValueError, match="pass --config.fid_weights=PATH or set GAN_JAX_FID_WEIGHTS"):
    validation.validate(_config(root, inception_metrics="on"), 8)
  with pytest.raises(ValueError, match="Unknown inception_metrics 'always'; choose one of: auto, on, off"):
    validation.validate(_config(root, inception_metrics="always"), 8)
  # 'auto' scores RGB images only, and only when the weights are given.
  monkeypatch.setenv("GAN_JAX_FID_WEIGHTS", str(tmp_path))
  assert validation.uses_inception(_config(root), (32, 32, 3))
  assert not validation.uses_inception(_config(root), (28, 28, 1))
  assert not validation.uses_inception(_config(root, inception_metrics="off"), (32, 32, 3))


def test_quality_adds_inception_scores_of_generated_against_real_test_images():
  from gan_jax.protocols.imbalance import quality  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  test_images = rng.integers(0, 256, (60, 4, 4, 3), dtype=np.uint8)
  test_labels = np.repeat(np.arange(3), 20)
  flat = lambda images: images.reshape(len(images), -1).astype(np.float64) / 255.0  # a stand-in feature map
  evaluator = quality.QualityEvaluator(None, None, (test_images, test_labels), num_classes=3, samples_per_class=20,
                                       train=None, cas_steps=1, cas_seed=0, inception_features=flat)
  same = evaluator.inception(test_images[test_labels < 2], test_labels[test_labels < 2])
  assert same["fid"] == pytest.approx(0.0, abs=1e-6) and same["precision"] == same["recall"] == 1.0
  assert same["num_real"] == 40  # only the classes generated
  shifted = evaluator.inception(np.clip(test_images.astype(int) + 120, 0, 255).astype(np.uint8), test_labels)
  assert shifted["fid"] > 1.0 and shifted["kid"] > 0 and shifted["precision"] < 0.5
