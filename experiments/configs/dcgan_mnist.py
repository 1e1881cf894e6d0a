"""DCGAN on 28x28 MNIST (use --config.dataset=fashion_mnist for Fashion-MNIST)."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("dcgan", dataset="mnist")
  return gan_common.apply_variant(config, variant)
