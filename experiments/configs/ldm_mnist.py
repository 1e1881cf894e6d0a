"""Latent diffusion, class-conditioned, on MNIST (variants: smoke, cpu; see diffusion_common)."""
from experiments.configs import diffusion_common


def get_config(variant=None):
  return diffusion_common.apply_variant(diffusion_common.base_config("ldm", "mnist"), variant)
