"""ACGAN (Odena et al., 2017): D predicts real/fake and the class."""
from experiments.configs import gan_common


def get_config(variant=None):
  config = gan_common.base_config("acgan", dataset="mnist")
  return gan_common.apply_variant(config, variant)
