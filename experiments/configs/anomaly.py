"""One-class anomaly detection on MNIST (--config.dataset=fashion_mnist for Fashion-MNIST).

Each (class, scorer) stage trains on the normal class's ~6,000 training images.
Variants (text after ':' in --config=path.py:variant):
  smoke: 2 classes, 30 steps, tiny widths, 2-D codes, 1,000 test images: seconds on 2 CPU cores.
  cpu:   all 10 classes, narrow networks, 2,000 steps per stage: ~30-45 min on 2 busy CPU cores
         (a 600-step probe reached AUROC 0.997 / 0.975 on classes 0 / 7 with the AE scorer).
  (none): all 10 classes, 6,000 steps per stage (~128 epochs of one class): one GPU.
"""
import ml_collections

from experiments.configs import variants

from experiments.configs import vae_common

VARIANTS = vae_common.VARIANTS


def get_config(variant=None):
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = "mnist"
  variants.add_source_fields(config)
  # Normal classes: 'all', or integers, e.g. --config.classes=0,3 or "(0, 3)".
  config.classes = "all"
  # Scorers, run in this order for each class: 'ae', 'vae', 'aae' (any subset).
  config.scorers = "ae,vae,aae"
  config.test_examples = 0  # 0: the whole test split; else a seeded random subset of this size
  config.figure_class = 0  # class of score_histogram.png and extremes.png (first run class if absent)
  config.num_extremes = 10
  # Training of every stage; the scorer decides the model, the fields above the data and seed.
  train = vae_common.training_config()
  # A narrow bottleneck keeps the normal-class autoencoders from reconstructing other digits
  # well (Deep SVDD's DCAE baseline uses 32 units for MNIST).
  train.latent_dim = 16
  train.num_steps = 6_000
  train.checkpoint_every = 2_000
  train.log_every = 200
  # Average the VAE's negative ELBO over posterior samples: a less noisy score.
  train.eval_samples = 4
  train.iwae_samples = 0
  config.train = train
  return apply_variant(config, variant)


def apply_variant(config, variant):
  variant = variant or ""
  vae_common.apply_variant(config.train, variant)
  if variant == "smoke":
    config.classes = "0,1"
    config.test_examples = 1_000
    config.train.checkpoint_every = 30
    config.train.eval_samples = 1
    # The ae_mnist / vae_mnist smoke settings: tests then compile each program once.
    config.train.latent_dim = 2
  elif variant == "cpu":
    config.train.num_steps = 2_000
    config.train.checkpoint_every = 500
    config.train.log_every = 100
  return config
