"""WGAN-GP (Gulrajani et al., 2017) with a DCGAN generator and a norm-free critic on MNIST."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("wgan_gp", dataset="mnist", loss="wasserstein")
  # Gulrajani et al. (2017): n_critic 5, lambda 10, Adam 1e-4, betas (0, 0.9).
  config.d_steps = 5
  config.gp_weight = 10.0
  config.lr_g = 1e-4
  config.lr_d = 1e-4
  config.b1 = 0.0
  config.b2 = 0.9
  return gan_common.apply_variant(config, variant)
