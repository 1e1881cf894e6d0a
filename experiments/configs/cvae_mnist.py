"""Label-conditioned VAE on 28x28 MNIST: samples.png has one row per class."""
from experiments.configs import vae_common


def get_config(variant=None):
  config = vae_common.base_config("cvae", dataset="mnist")
  config.latent_dim = 20
  config.iwae_samples = 500
  config = vae_common.apply_variant(config, variant)
  if variant == "smoke":
    config.latent_dim = 4
  return config
