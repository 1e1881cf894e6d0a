"""Conditional StyleGAN2 (Karras et al., 2020) on 32x32x3 CIFAR-10 (TFDS only: no offline IDX copy exists).

Variants: '' (the small-data recipe, 64 channels at 32x32 and 256 from 8x8 down; width=128 gives
StyleGAN2-ADA's 512), 'ada' (with adaptive discriminator augmentation), 'smoke', 'ada_smoke'.
"""
from experiments.configs import stylegan2_common


def get_config(variant=None):
  return stylegan2_common.get_config("cifar10", variant, width=64, num_steps=50_000)
