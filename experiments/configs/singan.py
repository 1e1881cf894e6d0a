"""SinGAN (Shaham et al., ICCV 2019) on one image, or A <-> B structural analogy with image_b set.

Defaults follow the official SinGAN code. Variants (text after ':' in --config=path.py:variant):
  smoke: a tiny pyramid (max side 32, 3 scales), 8 filters, 24 iterations per scale: seconds on a CPU
         (mostly compilation).
  cpu:   a reduced run for a 2-core CPU (~6 minutes): max side 96 (5 scales), 32 filters, 800 iterations.
"""
import ml_collections

from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu")


def get_config(variant=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  # A file path, or skimage:NAME for an image shipped with scikit-image (works offline).
  config.image = "skimage:chelsea"
  # Set to a second image for the A <-> B structural analogy; empty trains SinGAN on `image`.
  config.image_b = ""
  # Pyramid: factor r, coarsest min side, finest max side.
  config.scale_factor = 0.75
  config.min_size = 25
  config.max_size = 250
  # Networks: 5 conv layers; 32 filters doubling every 4 scales, at most 128.
  config.num_blocks = 5
  config.base_features = 32
  config.max_features = 128
  config.features_double_every = 4
  config.init_from_previous = True
  # How 3x3 convolutions are computed (same parameters): 'auto' = 'im2col' on CPU, 'xla' elsewhere.
  config.conv_impl = "auto"
  # Optimisation: Adam 5e-4, beta1 0.5, lr x 0.1 at iteration 1600 of 2000; 3 G and 3 D steps.
  config.iters_per_scale = 2000
  config.chunk_size = 100
  config.lr_g = 5e-4
  config.lr_d = 5e-4
  config.b1 = 0.5
  config.b2 = 0.999
  config.lr_milestone = 1600
  config.lr_gamma = 0.1
  config.g_steps = 3
  config.d_steps = 3
  # Losses: WGAN-GP lambda, reconstruction weight alpha, noise amplitude = 0.1 x RMSE, analogy cycle weight.
  config.gp_weight = 0.1
  config.alpha = 10.0
  config.noise_amp_scale = 0.1
  config.cycle_weight = 1.0
  # Outputs.
  config.num_samples = 8
  config.sample_start_scale = 1
  config.wide_factor = 2.0
  config.sr_factor = 4.0
  config.analogy_start_scale = 0
  return apply_variant(config, variant)


def apply_variant(config, variant):
  variant = variants.check_variant(variant, VARIANTS)
  if variant == "smoke":
    config.max_size = 32
    config.min_size = 16
    config.base_features = 8
    config.max_features = 8
    config.iters_per_scale = 24
    config.chunk_size = 8
    config.lr_milestone = 20
    config.num_samples = 4
    config.sr_factor = 2.0
    # Compiles twice as fast as im2col; at 22x32 with 8 filters the slow loop convolutions do not matter.
    config.conv_impl = "xla"
  elif variant == "cpu":
    config.max_size = 96
    config.max_features = 32
    config.iters_per_scale = 800
    config.lr_milestone = 640
  return config
