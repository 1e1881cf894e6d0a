"""The GAN training loop end to end on every config's :smoke variant, and exact resume."""
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from experiments.configs import variants
from gan_jax import metric_writer
from gan_jax.train import gan_loop
from gan_jax.train import nonfinite
from gan_runs import train as run
from gan_runs import without_timing

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices);
# the sharding tests use all 8 devices.
MESH_DEVICES = 2

CONFIGS = ["mlp_gan_mnist", "dcgan_mnist", "cgan_mnist", "acgan_mnist", "wgan_gp_mnist", "dcgan_cifar10"]
REQUIRED_KEYS = {"step", "d_loss", "g_loss", "d_real", "d_fake", "images_per_sec"}


def smoke_config(name, **overrides):
  return variants.load(name, "smoke", **overrides)


@pytest.mark.parametrize("name", CONFIGS)
def test_smoke_config_writes_every_output(name, tmp_path, idx_dir):
  config = smoke_config(name)
  run(config, tmp_path, idx_dir)

  with open(tmp_path / "config.json") as f:
    assert json.load(f)["model"] == config.model
  records = metric_writer.read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  for record in records:
    assert REQUIRED_KEYS <= set(record), record
    assert all(np.isfinite(record[k]) for k in REQUIRED_KEYS)
    assert record["images_per_sec"] > 0
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))

  grid = Image.open(tmp_path / "samples" / "step_00000020.png")
  assert (tmp_path / "samples" / "step_00000010.png").exists()
  height = 32 if config.dataset == "cifar10" else 28
  rows = 10 if config.model in ("cgan", "acgan") else 8  # images.sample_grid: a row per class or 8 x 8
  assert grid.size[1] == rows * (height + 2) + 2
  assert (tmp_path / "loss_curves.png").stat().st_size > 1000
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]


def test_rerun_resumes_exactly(tmp_path, idx_dir):
  straight = tmp_path / "straight"
  run(smoke_config("dcgan_mnist", checkpoint_every=10), straight, idx_dir)

  resumed = tmp_path / "resumed"
  run(smoke_config("dcgan_mnist", num_steps=10), resumed, idx_dir)
  assert [r["step"] for r in metric_writer.read_metrics(str(resumed))] == [5, 10]
  run(smoke_config("dcgan_mnist"), resumed, idx_dir)  # same command with num_steps raised to 20

  expected = without_timing(metric_writer.read_metrics(str(straight)))
  assert without_timing(metric_writer.read_metrics(str(resumed))) == expected
  assert len(expected) == 4


def test_finished_run_is_not_retrained(tmp_path, idx_dir):
  config = smoke_config("mlp_gan_mnist")
  run(config, tmp_path, idx_dir)
  before = metric_writer.read_metrics(str(tmp_path))
  record = run(config, tmp_path, idx_dir)
  assert metric_writer.read_metrics(str(tmp_path)) == before
  assert record["step"] == 20


def test_workdir_with_a_different_config_is_refused(tmp_path, idx_dir):
  run(smoke_config("mlp_gan_mnist", num_steps=5), tmp_path, idx_dir)
  with pytest.raises(ValueError, match=r"different config \(lr_g: 0.0002 -> 0.001\).*--overwrite"):
    run(smoke_config("mlp_gan_mnist", num_steps=5, lr_g=1e-3), tmp_path, idx_dir)
  gan_loop.train_gan(smoke_config("mlp_gan_mnist", num_steps=5, lr_g=1e-3), str(tmp_path), idx_dir=str(idx_dir),
                     overwrite=True)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["lr_g"] == 1e-3


@pytest.mark.parametrize("field, value, message", [
    ("model", "biggan", "Unknown model 'biggan'"),
    ("loss", "kl", "Unknown loss 'kl'"),
    ("dataset", "svhn", "Unknown dataset 'svhn'"),
    ("batch_size", 13, "not divisible by the number of devices"),
    ("on_nonfinite", "ignore", "Unknown on_nonfinite 'ignore'"),
    ("num_steps", 0, "num_steps must be a positive integer"),
    ("g_ema_decay", 1.0, "g_ema_decay must lie in"),
    ("augment", "translation,flip", "Unknown augmentation 'flip'"),
])
def test_bad_config_values_are_clear_errors(field, value, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    gan_loop.train_gan(smoke_config("dcgan_mnist", **{field: value}), str(tmp_path), idx_dir=None)


@pytest.mark.parametrize("overrides, expected", [
    (dict(imbalance="deepsmote_100"), [4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40]),
    (dict(imbalance="exponential", imbalance_rho=100.0, imbalance_n_max=1000), [1000, 599, 359, 215, 129, 77, 46, 28, 17, 10]),
    (dict(imbalance="step", imbalance_minority_classes="1,3", imbalance_fraction=0.01), None),
])
def test_imbalanced_training_data(overrides, expected, idx_dir):
  config = smoke_config("mlp_gan_mnist", **overrides)
  images, labels = gan_loop.load_train_arrays(config, str(idx_dir))
  counts = np.bincount(labels, minlength=10).tolist()
  if expected is None:  # step: classes 1 and 3 keep 1 %, the others everything
    expected = [5923, 67, 5958, 61, 5842, 5421, 5918, 6265, 5851, 5949]
  assert counts == expected
  assert images.dtype == np.uint8 and images.shape == (sum(expected), 28, 28, 1)


def test_train_classes_keeps_only_those_classes_of_the_imbalanced_set(idx_dir):
  config = smoke_config("mlp_gan_mnist", imbalance="deepsmote_100", train_classes="8,9")
  _, labels = gan_loop.load_train_arrays(config, str(idx_dir))
  assert np.bincount(labels, minlength=10).tolist() == [0] * 8 + [60, 40]
  with pytest.raises(ValueError, match="train_classes must lie in"):
    gan_loop.load_train_arrays(smoke_config("mlp_gan_mnist", train_classes="10"), str(idx_dir))


def test_class_balanced_repeats_the_rare_classes_of_the_imbalanced_set(idx_dir):
  plain_images, plain_labels = gan_loop.load_train_arrays(smoke_config("cgan_mnist", imbalance="deepsmote_100"),
                                                          str(idx_dir))
  images, labels = gan_loop.class_balanced(plain_images, plain_labels, seed=0)
  assert np.bincount(labels, minlength=10).tolist() == [4000] * 10
  # Only real images of the class, repeated: class 9's 40 images, each 100 times.
  nines = images[labels == 9].reshape(4000, -1)
  assert len(np.unique(nines, axis=0)) == len(np.unique(plain_images[plain_labels == 9].reshape(40, -1), axis=0))


def test_load_generator_samples_the_trained_generator(tmp_path, idx_dir):
  config = smoke_config("cgan_mnist")
  run(config, tmp_path, idx_dir)
  sample = gan_loop.load_generator(config, str(tmp_path), image_shape=(28, 28, 1), num_classes=10)
  import jax  # pylint: disable=g-import-not-at-top
  key = jax.random.PRNGKey(3)
  labels = np.array([0, 1, 2, 3, 4, 5, 6], np.int32)
  images = sample(key, labels, batch_size=4)  # two chunks, the second padded
  assert images.dtype == np.uint8 and images.shape == (7, 28, 28, 1)
  np.testing.assert_array_equal(images, sample(key, labels, batch_size=4))
  assert not np.array_equal(images, sample(jax.random.PRNGKey(4), labels, batch_size=4))
  with pytest.raises(FileNotFoundError):
    gan_loop.load_generator(config, str(tmp_path / "empty"), image_shape=(28, 28, 1), num_classes=10)


def test_load_generator_samples_the_ema_weights_when_the_run_keeps_them(tmp_path, idx_dir):
  import jax  # pylint: disable=g-import-not-at-top
  labels = np.arange(10, dtype=np.int32)
  key = jax.random.PRNGKey(0)
  drawn = {}
  for decay in (0.0, 0.5):
    config = smoke_config("cgan_mnist", g_ema_decay=decay)
    workdir = tmp_path / f"ema{decay}"
    run(config, workdir, idx_dir)
    drawn[decay] = gan_loop.load_generator(config, str(workdir), image_shape=(28, 28, 1), num_classes=10)(key, labels)
    with open(workdir / "metrics.jsonl") as f:
      # Wall-clock throughput legitimately differs between runs.
      drawn[decay, "metrics"] = [{k: v for k, v in json.loads(line).items() if k != "images_per_sec"} for line in f]
  # Training is identical (the average never feeds back), the sampled generator is not.
  assert drawn[0.0, "metrics"] == drawn[0.5, "metrics"]
  assert not np.array_equal(drawn[0.0], drawn[0.5])


@pytest.mark.parametrize("stacked", [False, True])
def test_health_check_names_the_first_bad_update_and_the_member(stacked):
  names = ["d_loss", "g_loss"]
  # The mask's bits follow sorted names: bit 1 is g_loss.
  health = {"nonfinite_steps": np.int32(2), "first_bad_mask": np.int32(0b10), "first_bad_step": np.int32(7)}
  if stacked:  # member 0 is clean, member 1 is the first with a skipped update
    health = {"nonfinite_steps": np.array([0, 2, 1]), "first_bad_mask": np.array([0, 0b10, 0b01]),
              "first_bad_step": np.array([0, 7, 3])}
  state = types.SimpleNamespace(health=health)
  extra, error = nonfinite.health_check("error", names)(state, {}, 9)
  assert extra == {"nonfinite_skips": 3 if stacked else 2}
  assert error == "Non-finite g_loss at step 7" + (" of member 1" if stacked else "") + "; the update was not applied"
  assert nonfinite.health_check("skip", names)(state, None, 9) == ({}, None)
