"""Helpers of the GAN loop tests: a config's training run (TFDS mock data for CIFAR-10) and its records."""
from gan_jax.train import gan_loop

TIMING_KEYS = {"images_per_sec"}


def train(config, workdir, idx_dir):
  """`gan_loop.train_gan` on the real IDX files, or on TFDS mock data for CIFAR-10 (nothing to download)."""
  if config.dataset == "cifar10":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    with tfds.testing.mock_data(num_examples=64):
      return gan_loop.train_gan(config, str(workdir), idx_dir=None)
  return gan_loop.train_gan(config, str(workdir), idx_dir=str(idx_dir))


def without_timing(records):
  """Metric records without their wall-clock fields, which differ between otherwise identical runs."""
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]
