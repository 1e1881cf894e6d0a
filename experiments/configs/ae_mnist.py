"""Convolutional autoencoder on 28x28 MNIST, trained with the squared reconstruction error.

--config.model=aae adds the image-space discriminator (adversarially trained autoencoder).
"""
from experiments.configs import vae_common


def get_config(variant=None):
  config = vae_common.base_config("ae", dataset="mnist")
  config.latent_dim = 32
  config = vae_common.apply_variant(config, variant)
  if variant == "smoke":
    config.latent_dim = 2
  return config
