"""WGAN-GP (Gulrajani et al., 2017) with a DCGAN generator and a norm-free critic on MNIST.

The family's recipe (gan_jax.models.FAMILIES): n_critic 5, lambda 10, Adam 1e-4, betas (0, 0.9).
"""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("wgan_gp", dataset="mnist")
  return gan_common.apply_variant(config, variant)
