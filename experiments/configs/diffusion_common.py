"""Shared defaults of the diffusion configs (ldm_*, ddpm_*); each file changes only what differs.

Variants (the text after ':' in --config=path.py:variant):
  smoke: a tiny U-Net and first stage, a few steps: seconds of training on a CPU (mostly compilation).
  cpu:   a reduced run for a 2-core CPU: narrower U-Net, fewer steps.
"""
from __future__ import annotations

import ml_collections

from experiments.configs import gan_common
from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu")


def training_config(model: str) -> ml_collections.ConfigDict:
  """The model and training fields of a diffusion run ('ldm' or 'ddpm'); no data fields."""
  config = ml_collections.ConfigDict()
  config.model = model
  # Denoiser: a U-Net of ResNet blocks with cross-attention to class tokens (gan_jax.models.unet).
  config.widths = (64, 128) if model == "ldm" else (64, 128, 128)
  config.blocks_per_level = 2
  config.heads = 4
  config.context_dim = 64
  config.dropout_rate = 0.1
  # Diffusion: T steps of a linear (Ho et al.) or cosine (Nichol & Dhariwal) schedule.
  config.schedule = "linear"
  config.diffusion_steps = 1_000
  config.prediction = "epsilon"  # or 'v' (Salimans & Ho)
  config.label_dropout = 0.1  # labels replaced by the null token: classifier-free guidance
  config.ema_decay = 0.999
  # Sampling: DDIM (eta 0: deterministic) or ancestral DDPM, and the guidance scale w
  # (eps = eps_uncond + w (eps_cond - eps_uncond); 1 = conditional, 0 = unconditional).
  config.sampler = "ddim"
  config.sample_steps = 50
  config.eta = 0.0
  config.guidance = 3.0
  # Images per sampler call (the last call of a draw padded): the sampler compiles once for this size.
  config.sample_batch_size = 500
  # Optimisation.
  config.batch_size = 128
  config.num_steps = 20_000
  config.learning_rate = 2e-4
  config.log_every = 100
  config.checkpoint_every = 1_000
  config.keep_checkpoints = 3
  # First stage (ldm): KL autoencoder, 4x down-sampling to a latent of latent_channels.
  config.latent_channels = 4
  config.ae_widths = (32, 64)
  config.reconstruction = "l1"
  config.kl_weight = 1e-6
  config.ae_batch_size = 128
  config.ae_steps = 5_000
  config.ae_learning_rate = 1e-3
  # Optional patch discriminator on the reconstructions (latent diffusion's autoencoders use 0.5 from a
  # late step on): 0 turns it off. Its generator loss is scaled by the adaptive weight of Esser et al.
  config.ae_disc_weight = 0.0
  config.ae_disc_start = 1_000  # first-stage step at which the discriminator term starts
  config.ae_disc_width = 32
  config.ae_disc_layers = 2  # stride-2 layers of the PatchGAN: 34x34 patches, the whole 28/32 px image
  config.ae_disc_loss = "hinge"
  return config


def base_config(model: str, dataset: str = "mnist") -> ml_collections.ConfigDict:
  """A standalone run: `training_config` plus the data fields of a GAN run (imbalance profile too)."""
  config = gan_common.base_config("dcgan", dataset)
  for field in list(gan_common.training_config("dcgan")):
    del config[field]
  config.update(training_config(model))
  return config


def apply_variant(config: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
  variant = variants.check_variant(variant, VARIANTS)
  if variant == "smoke":
    config.widths = (16, 32)
    config.blocks_per_level = 1
    config.heads = 2
    config.context_dim = 16
    config.ae_widths = (8, 16)
    config.batch_size = config.ae_batch_size = 16
    config.num_steps = config.ae_steps = 6
    config.ae_disc_start = 3
    config.ae_disc_width = 8
    config.log_every = config.checkpoint_every = 3
    config.diffusion_steps = 100
    config.sample_steps = 4
    config.sample_batch_size = 64  # the smoke draws are tens of images per class
  elif variant == "cpu":
    config.blocks_per_level = 1
    config.context_dim = 32
    config.batch_size = 64
    config.num_steps = 4_000
    config.ae_steps = 2_000
    config.ae_batch_size = 64
    if config.model == "ldm":
      config.widths = (32, 64)
      config.sample_steps = 25
    else:
      # The pixel U-Net works on 16x more positions than the 7x7 latent one: at this width and 10
      # DDIM steps it trains at ~190 img/s and draws ~41 img/s on 2 cores (docs/diffusion.md), so
      # the imbalance benchmark's filtered synthetic set takes about as long as its training.
      config.widths = (16, 32, 32)
      config.sample_steps = 10
  return config
