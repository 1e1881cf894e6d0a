"""Vanilla MLP GAN (Goodfellow et al., 2014) on MNIST, sigmoid output in [0, 1]."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("mlp_gan", dataset="mnist")
  config.num_steps = 20_000
  return gan_common.apply_variant(config, variant)
