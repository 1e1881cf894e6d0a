"""StyleGAN2 configs: the conditional StyleGAN2 of Karras et al. (CVPR 2020), with ADA on request.

Variants (the text after ':' in --config=path.py:variant):
  (none): the settings of StyleGAN2-ADA's small-data recipe at 32x32.
  ada: the same with adaptive discriminator augmentation (target r_t 0.6).
  smoke, ada_smoke: a tiny model and 20 steps (R1 and p updates fire within them).
"""
from __future__ import annotations

import ml_collections

from experiments.configs import gan_common
from experiments.configs import variants

VARIANTS = ("", "smoke", "ada", "ada_smoke")


def r1_gamma(resolution: int, batch_size: int) -> float:
  """StyleGAN2-ADA's automatic R1 weight: 0.0002 * resolution^2 / batch size."""
  return 0.0002 * resolution**2 / batch_size


def apply_style_defaults(config: ml_collections.ConfigDict, resolution: int = 32,
                         width: int = 32) -> ml_collections.ConfigDict:
  """Sets a `training_config("stylegan2")`'s fields to the small-data recipe (lazy R1, EMA, mapping depth 2)."""
  config.batch_size = 64
  config.width = width
  config.mapping_layers = 2
  config.r1_gamma = r1_gamma(resolution, config.batch_size)
  config.r1_interval = 16
  # An EMA half-life of 10k images at batch 32 (StyleGAN2-ADA's ema_kimg = batch * 10 / 32):
  # 0.5^(1 / 312.5) per step.
  config.g_ema_decay = 0.998
  return config


def get_config(dataset: str, variant: str | None, *, width: int = 32,
               num_steps: int = 10_000) -> ml_collections.ConfigDict:
  """A standalone StyleGAN2 run on `dataset` for the named variant (`width` and `num_steps` of the full run)."""
  variant = variants.check_variant(variant, VARIANTS)
  config = apply_style_defaults(gan_common.base_config("stylegan2", dataset=dataset), width=width)
  config.num_steps = num_steps
  if variant.startswith("ada"):
    config.ada_target = 0.6
  if variant.endswith("smoke"):
    apply_smoke(config)
  return config


def apply_smoke(config: ml_collections.ConfigDict) -> None:
  """The smoke sizes, with R1 and p updates that fire within a few steps."""
  gan_common.apply_variant(config, "smoke")
  config.r1_interval = 4
  config.ada_interval = 2
  config.ada_kimg = 1  # p visibly moves within the 20 steps
