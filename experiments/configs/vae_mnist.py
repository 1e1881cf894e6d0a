"""VAE on 28x28 MNIST (--config.dataset=fashion_mnist for Fashion-MNIST).

--config.latent_dim=2 adds the latent scatter and manifold figures;
--config.binarize=True trains and tests on binarised pixels, the protocol of
published MNIST VAE likelihoods (see iwae_samples for the tighter bound).
"""
from experiments.configs import vae_common


def get_config(variant=None):
  config = vae_common.base_config("vae", dataset="mnist")
  config.latent_dim = 20
  config.iwae_samples = 500
  config = vae_common.apply_variant(config, variant)
  if variant == "smoke":
    config.latent_dim = 2  # exercises latent_scatter.png and manifold.png
  return config
