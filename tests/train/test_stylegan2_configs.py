"""The StyleGAN2 configs end to end: every :smoke variant trains, writes its outputs, and resumes exactly."""
import numpy as np
import pytest
from PIL import Image

from experiments.configs import variants
from gan_jax import metric_writer
from gan_jax.train import gan_loop

TIMING_KEYS = {"images_per_sec"}


def train(config, workdir, idx_dir):
  if config.dataset == "cifar10":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    with tfds.testing.mock_data(num_examples=64):
      return gan_loop.train_gan(config, str(workdir), idx_dir=None)
  return gan_loop.train_gan(config, str(workdir), idx_dir=str(idx_dir))


def without_timing(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_ada_smoke_trains_with_r1_and_ada_and_resumes_exactly(tmp_path, idx_dir):
  config = lambda **o: variants.load("stylegan2_mnist", "ada_smoke", checkpoint_every=10, **o)
  straight = tmp_path / "straight"
  train(config(), straight, idx_dir)
  records = metric_writer.read_metrics(str(straight))
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  assert all({"ada_p", "r1_penalty", "d_real_sign"} <= set(r) for r in records)
  assert all(0.0 <= r["ada_p"] <= 1.0 and np.isfinite(r["g_loss"]) for r in records)
  grid = Image.open(straight / "samples" / "step_00000020.png")
  assert grid.size[1] == 10 * (28 + 2) + 2  # one row per class

  resumed = tmp_path / "resumed"
  train(config(num_steps=10), resumed, idx_dir)
  train(config(), resumed, idx_dir)  # the same command with num_steps raised to 20
  assert without_timing(metric_writer.read_metrics(str(resumed))) == without_timing(records)


@pytest.mark.parametrize("name", ["stylegan2_cifar10"])  # MNIST is covered by the ADA run above
def test_plain_smoke_configs_train_without_ada(name, tmp_path, idx_dir):
  config = variants.load(name, "smoke")
  assert config.ada_target == 0 and config.r1_gamma > 0
  train(config, tmp_path, idx_dir)
  records = metric_writer.read_metrics(str(tmp_path))
  assert "ada_p" not in records[-1] and np.isfinite(records[-1]["d_loss"])
  side = 32 if name.endswith("cifar10") else 28
  grid = Image.open(tmp_path / "samples" / "step_00000020.png")
  assert grid.size[1] == 10 * (side + 2) + 2


def test_bad_stylegan2_values_are_clear_errors(tmp_path):
  for field, value, message in [("ada_target", 1.0, "ada_target must lie in"),
                                ("style_mixing_prob", 1.5, "style_mixing_prob must lie in"),
                                ("r1_gamma", -1.0, "r1_gamma"),
                                ("ada_policy", "xflip", "Unknown ADA policy 'xflip'")]:
    with pytest.raises(ValueError, match=message):
      gan_loop.train_gan(variants.load("stylegan2_mnist", "ada_smoke", **{field: value}), str(tmp_path),
                         idx_dir=None)
  with pytest.raises(ValueError, match="Unknown config variant 'ada_cpu'"):
    variants.load("stylegan2_mnist", "ada_cpu")
