"""Shared fields of the translation configs (pix2pix, CycleGAN); each config file changes what differs.

Variants (the text after ':' in --config=path.py:variant):
  smoke: tiny networks and a few hundred steps, well under a minute on 2 CPU cores.
  cpu:   at most 15 minutes per trained model on 2 CPU cores (the measured runs in docs/translation.md).
  (none): the papers' widths, for a GPU/TPU.
"""
from __future__ import annotations

import ml_collections

from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu")


def base_config(method: str, data: str) -> ml_collections.ConfigDict:
  """The papers' settings for `method` on `data` (see gan_jax/translation)."""
  config = ml_collections.ConfigDict()
  config.method = method  # pix2pix (paired) | cyclegan (unpaired)
  config.seed = 0
  # Data: edges2digits | thin2thick | folder:<path> | tfds:cycle_gan/<name>.
  config.data = data
  config.dataset = "mnist"  # the digit source of edges2digits / thin2thick: mnist | fashion_mnist
  config.image_size = 32  # digits are padded 28 -> 32; folders and TFDS are resized to it (0: keep, folders only)
  config.channels = 0  # folders / TFDS: 1 grayscale, 3 RGB, 0 the images' own
  config.train_examples = 0  # 0: every training image of each domain
  config.test_examples = 1000  # 0: the whole test split
  config.thicken = 1  # thin2thick: dilation radius in pixels (a 3x3 square)
  config.direction = "AtoB"  # BtoA swaps the domains (a pix2pix folder's right half becomes the input)
  # The papers' jitter: enlarge by 286/256 and crop back at random; mirror at random (off for digits).
  config.jitter = False
  config.flip = False
  config.upper_bound = True  # unpaired tasks with a known answer also train pix2pix on the true pairs
  # Networks: '' = the paper's generator (U-Net for pix2pix, ResNet for CycleGAN).
  config.generator = ""
  config.width_g = 64
  config.width_d = 64
  config.patch_size = 16  # PatchGAN receptive field: 16, 34, 70 (the papers' at 256 px), 142, 286
  config.dropout_blocks = 3  # U-Net decoder blocks with dropout 0.5
  config.num_blocks = 0  # ResNet blocks; 0: 6 up to 128 px, 9 from 256 px
  # Objective.
  config.loss = "non_saturating" if method == "pix2pix" else "least_squares"
  config.gan_weight = 1.0 if method == "pix2pix" else 2.0  # 2 x this project's 0.5 (D - 1)^2 = CycleGAN's MSE
  config.l1_weight = 100.0
  config.cycle_weight = 10.0
  config.identity_weight = 0.5
  config.pool_size = 50
  # Optimisation: Adam 2e-4, beta1 0.5; constant, then linearly to zero over the last decay_steps.
  config.batch_size = 8
  config.num_steps = 20_000
  config.decay_steps = 10_000
  config.lr = 2e-4
  config.b1 = 0.5
  config.b2 = 0.999
  config.log_every = 100
  config.checkpoint_every = 1_000
  config.sample_every = 1_000
  config.keep_checkpoints = 3
  config.eval_batch_size = 256
  config.eval_dropout = False  # True keeps the U-Net's dropout on at test time, as pix2pix's reference does
  config.on_nonfinite = "error"
  return config


def apply_variant(config: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
  variant = variants.check_variant(variant, VARIANTS)
  if variant == "smoke":
    config.width_g = 8
    config.width_d = 8
    config.num_blocks = 2
    config.num_steps = 150
    config.decay_steps = 50
    config.lr = 1e-3
    config.train_examples = 2_000
    config.test_examples = 200
    config.log_every = 50
    config.checkpoint_every = 100
    config.sample_every = 150
    config.eval_batch_size = 200
  elif variant == "cpu":
    # Width 16 keeps a CycleGAN step (four generator passes) near 0.2 s on 2 cores; 32 took 1.2 s.
    config.width_g = 16
    config.width_d = 16
    config.num_steps = 3_000
    config.decay_steps = 1_500
    config.test_examples = 1_000
    config.log_every = 100
    config.checkpoint_every = 500
    config.sample_every = 500
  return config
