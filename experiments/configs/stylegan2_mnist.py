"""Conditional StyleGAN2 (Karras et al., 2020) on MNIST, generated at 32x32 and cropped to 28x28.

Variants: '' (the small-data recipe), 'ada' (with adaptive discriminator augmentation), 'smoke', 'ada_smoke'.
"""
from experiments.configs import stylegan2_common


def get_config(variant=None):
  return stylegan2_common.get_config("mnist", variant)
