"""Conditional ProGAN (Karras et al., ICLR 2018) on MNIST, grown 4x4 -> 32x32 and cropped to 28x28.

Variants (the text after ':' in --config=path.py:variant):
  (none): the paper's recipe at this size: WGAN-GP with the drift term, Adam 1e-3 (0, 0.99),
    batch 64, 300k images per fade-in and per stable phase (the paper's 800k is for 1024 px;
    four phases of 28 px converge well before), then the 32x32 phase runs on to 60k steps.
  smoke: a tiny model whose 24 steps pass through every phase and fade.
  cpu: width 16 and 12k steps sized for two CPU cores.
--config.dataset=fashion_mnist (or any 28x28 or 32x32 data set) switches the data.
"""
from experiments.configs import gan_common
from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu")


def get_config(variant=None):
  variant = variants.check_variant(variant, VARIANTS)
  config = gan_common.base_config("progan", dataset="mnist")
  config.batch_size = 64
  config.width = 64
  config.fade_kimg = 300.0
  config.stable_kimg = 300.0
  config.num_steps = 60_000
  config.g_ema_decay = 0.999  # Karras et al. sample from a running average of G's weights
  if variant == "cpu":
    config.width = 16
    config.fade_kimg = config.stable_kimg = 48.0  # 750 steps each: the 32x32 phase starts at step 3,750
    config.num_steps = 12_000
  if variant == "smoke":
    apply_smoke(config)
    config.num_steps = 24
  return config


def apply_smoke(config):
  """The smoke sizes; 16 images a step: phases start at steps 2, 6, 10 (a 2-step stable part, then 2-step fades)."""
  gan_common.apply_variant(config, "smoke")
  config.fade_kimg = config.stable_kimg = 0.032
