"""CycleGAN on thin2thick: MNIST digits -> dilated digits from the other half of the train split (unpaired).

Also trains pix2pix on the true pairs (config.upper_bound) for the bound an unpaired method can approach.
"""
from experiments.configs import translation_common


def get_config(variant=None):
  return translation_common.apply_variant(translation_common.base_config("cyclegan", "thin2thick"), variant)
