"""DCGAN on 32x32x3 CIFAR-10 (TFDS only: no offline IDX copy exists)."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("dcgan", dataset="cifar10")
  config.num_steps = 50_000
  return gan_common.apply_variant(config, variant)
