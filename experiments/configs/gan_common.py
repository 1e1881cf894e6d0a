"""Shared defaults of every GAN config; each configs/<name>.py changes only what differs.

Variants (the text after ':' in --config=path.py:variant):
  smoke: a tiny model and 20 steps that finish in well under a minute on 2 CPU cores.
"""
from __future__ import annotations

import ml_collections

from experiments.configs import variants
from gan_jax import models

VARIANTS = ("", "smoke")


def training_config(model: str, loss: str | None = None) -> ml_collections.ConfigDict:
  """The model and training fields of a GAN, starting from its family's published recipe.

  This is all a driver that hands the GAN its arrays (the imbalance benchmark) needs;
  `base_config` adds the data fields of a standalone run.
  """
  recipe = models.get_family(model).recipe
  config = ml_collections.ConfigDict()
  config.model = model
  config.loss = loss or recipe.loss
  config.batch_size = 128
  config.num_steps = 10_000
  config.d_steps = recipe.d_steps
  config.log_every = 100
  config.checkpoint_every = 1_000
  config.sample_every = 1_000
  # Model.
  config.z_dim = 0  # 0: the family's default (100 for 28x28 and MLP, 128 for 32x32).
  config.width = 64
  config.conditioning = "concat"  # label-conditioned discriminators: 'concat' or 'projection'.
  config.spectral_norm = False  # spectrally normalised discriminator (convolutional models)
  config.upsample_impl = "auto"  # see gan_jax.kernels.upsample.UPSAMPLE_IMPLS
  # Optimisation: Adam with the family's learning rates and betas.
  config.lr_g = recipe.lr_g
  config.lr_d = recipe.lr_d
  config.b1 = recipe.b1
  config.b2 = recipe.b2
  config.gp_weight = recipe.gp_weight
  config.aux_weight = 1.0
  # > 0: sample with an exponential moving average of the generator weights (e.g. 0.999).
  config.g_ema_decay = 0.0
  # True: G's update reuses the last D update's fakes (one G forward per step; PyTorch DCGAN
  # example style) instead of fresh noise (Algorithm 1).
  config.reuse_fakes = False
  # DiffAugment policy for D's input (Zhao et al., 2020), e.g. 'translation,cutout' or
  # 'color,translation,cutout'; '' trains without (see gan_jax.augment).
  config.augment = ""
  # True: repeat the rarer classes' images until every class has as many as the largest, so
  # batches are class-balanced in expectation (rare classes get as many G and D updates).
  config.class_balanced = False
  # StyleGAN2 (model 'stylegan2'): mapping depth (2 for 32x32 in StyleGAN2-ADA, 8 at full size),
  # share of samples with mixed styles, sampling-time truncation towards the average w (1: none).
  config.mapping_layers = 2
  config.style_mixing_prob = 0.9
  config.truncation_psi = 1.0
  # Lazy R1 penalty gamma / 2 E||grad D(real)||^2 every r1_interval D updates (0: off; StyleGAN2 uses it).
  config.r1_gamma = 0.0
  config.r1_interval = 16
  # Adaptive discriminator augmentation (Karras et al., 2020): the target r_t = E[sign D(real)]
  # (0.6; 0 turns ADA off), steps between updates of p, thousands of images for p to sweep [0, 1],
  # and the transformations (gan_jax.ada.TRANSFORMS; no flips, which would break digits).
  config.ada_target = 0.0
  config.ada_interval = 4
  config.ada_kimg = 500
  config.ada_policy = "translation,geometric,color"
  # ProGAN (model 'progan'): thousands of real images per fade-in and per stable part of each growth
  # phase (800 each in Karras et al., 2018), and the drift weight epsilon of E[D(real)^2] (their 1e-3).
  config.fade_kimg = 800.0
  config.stable_kimg = 800.0
  config.drift_weight = 1e-3 if model == "progan" else 0.0
  config.keep_checkpoints = 3
  # NaN/Inf in a loss or gradient: 'error' stops the run naming the step; 'skip' drops the update.
  config.on_nonfinite = "error"
  return config


def base_config(model: str, dataset: str = "mnist", loss: str | None = None) -> ml_collections.ConfigDict:
  """A standalone GAN run: `training_config` plus the data it trains on."""
  config = training_config(model, loss)
  config.seed = 0
  config.dataset = dataset
  variants.add_source_fields(config)
  # Data: '' or 'none' trains on the full split; otherwise an imbalance profile name.
  config.imbalance = "none"  # e.g. deepsmote_100, exponential, step, or '4000,2000,...'
  config.imbalance_rho = 0.0  # exponential: n_i = n_max * rho^(-i/(C-1))
  config.imbalance_n_max = 0
  config.imbalance_minority_classes = ""  # step: e.g. '0,2,4'
  config.imbalance_fraction = 0.0  # step: share of each minority class kept
  # Train on these classes only ('' = all; e.g. '7' for a per-class unconditional GAN).
  config.train_classes = ""
  return config


def apply_variant(config: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
  """Applies a named variant in place; unknown variants are an error."""
  variant = variants.check_variant(variant, VARIANTS)
  if variant == "smoke":
    config.batch_size = 16
    config.num_steps = 20
    config.width = 8
    config.log_every = 5
    config.checkpoint_every = 10
    config.sample_every = 10
  return config
