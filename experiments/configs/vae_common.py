"""Shared defaults of the autoencoder configs (ae_mnist, vae_mnist, cvae_mnist, and the anomaly stages).

Variants (the text after ':' in --config=path.py:variant):
  smoke: tiny widths, 30 steps, 2-D latent where the figures need it; seconds on 2 CPU cores.
  cpu:   fewer steps and narrower networks: minutes on 2 CPU cores.
  (none): the full run, sized for one GPU.
"""
from __future__ import annotations

import ml_collections

from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu")


def training_config() -> ml_collections.ConfigDict:
  """The model-size and training fields of an autoencoder; the driver decides the model, data and seed."""
  config = ml_collections.ConfigDict()
  # Model: 4x4 stride-2 convolutions of width, 2*width channels; dense layers of `hidden` units.
  config.latent_dim = 20
  config.width = 32
  config.hidden = 256
  config.upsample_impl = "auto"
  # Likelihood of the (C)VAE: 'bernoulli' (sigmoid cross-entropy on [0, 1] pixels) or
  # 'gaussian' with a fixed standard deviation.
  config.likelihood = "bernoulli"
  config.gaussian_std = 0.1
  config.beta = 1.0
  # Resample pixels as Bernoulli(intensity) every step and binarise the test set once:
  # the "dynamically binarised MNIST" protocol of published VAE likelihoods.
  config.binarize = False
  # aae: weight of the adversarial loss, discriminator learning rate, lambda of the score.
  config.adversarial_weight = 1.0
  config.d_learning_rate = 2e-4
  config.aae_score_weight = 1.0
  # Optimisation: Adam.
  config.batch_size = 128
  config.num_steps = 20_000  # ~43 epochs of the 60k MNIST training images
  config.learning_rate = 1e-3
  config.log_every = 100
  config.checkpoint_every = 2_000
  config.keep_checkpoints = 2
  # Test-set evaluation: global batch size, posterior samples per negative-ELBO estimate,
  # importance samples of the IWAE bound (0: skip), and a test subset (0: all).
  config.eval_batch_size = 512
  config.eval_samples = 1
  config.iwae_samples = 0
  config.eval_examples = 0
  return config


def base_config(model: str, dataset: str = "mnist") -> ml_collections.ConfigDict:
  """A standalone run (experiments.train_vae): the model, its data and seed, and `training_config`."""
  config = training_config()
  config.seed = 0
  config.dataset = dataset
  variants.add_source_fields(config)
  config.model = model  # 'ae' | 'vae' | 'cvae' | 'aae' (image-space adversarial autoencoder)
  return config


def apply_variant(config: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
  """Applies a named variant in place; unknown variants are an error."""
  variant = variants.check_variant(variant, VARIANTS)
  if variant == "smoke":
    config.width = 4
    config.hidden = 32
    config.batch_size = 32
    config.num_steps = 30
    config.learning_rate = 2e-3
    config.log_every = 5
    config.checkpoint_every = 15
    config.eval_batch_size = 256
    config.eval_examples = 512
    config.iwae_samples = min(config.iwae_samples, 2)
  elif variant == "cpu":
    config.width = 16
    config.hidden = 128
    config.num_steps = 3_000
    config.checkpoint_every = 500
    config.iwae_samples = min(config.iwae_samples, 20)
  return config
