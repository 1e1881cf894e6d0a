"""Conditional GAN (Mirza & Osindero, 2014) with a DCGAN backbone on MNIST."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("cgan", dataset="mnist")
  config.conditioning = "concat"  # or 'projection' (Miyato & Koyama, 2018)
  return gan_common.apply_variant(config, variant)
