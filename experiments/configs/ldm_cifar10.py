"""Latent diffusion, class-conditioned, on CIFAR-10 (8x8x4 latents; variants: smoke, cpu; see diffusion_common)."""
from experiments.configs import diffusion_common


def get_config(variant=None):
  config = diffusion_common.base_config("ldm", "cifar10")
  config.ae_widths = (64, 128)
  return diffusion_common.apply_variant(config, variant)
