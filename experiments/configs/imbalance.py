"""The imbalance benchmark: GAN oversampling against classic remedies (experiments.imbalance).

Variants (the text after ':' in --config=path.py:variant):
  smoke: a 300-image profile, 1,000 test images, tiny generators, 2 seeds: under 3 minutes on 2 CPU cores.
  cpu:   the real deepsmote_100 MNIST set and full test split, narrower generators, fewer steps,
         3 seeds: sized to finish in under 90 minutes on 2 CPU cores.
  cpu_cgan10k: cpu, with the full config's 10,000 cGAN steps (lever 8 of docs/imbalance.md).
  cpu_cgan10k_mix: cpu_cgan10k, half of each class's gap generated and the rest real duplicates:
         the best generative training set measured (docs/imbalance.md).
  (none): 5 seeds and full-size generators: one GPU or TPU.
"""
import ml_collections

from experiments.configs import gan_common
from experiments.configs import vae_common
from experiments.configs import variants

VARIANTS = ("", "smoke", "cpu", "cpu_cgan10k", "cpu_cgan10k_mix")


def get_config(variant=None):
  variant = variants.check_variant(variant, VARIANTS)
  config = ml_collections.ConfigDict()
  config.seed = 0  # selects the imbalanced subset, seeds the generators and the classifier seeds
  config.dataset = "mnist"  # or fashion_mnist
  # Train profile: a name from gan_jax.data.PROFILES or explicit counts '4000,2000,...'.
  config.profile = "deepsmote_100"
  config.imbalance_rho = 0.0  # profile 'exponential'
  config.imbalance_n_max = 0
  config.imbalance_minority_classes = ""  # profile 'step'
  config.imbalance_fraction = 0.0
  # The imbalanced test subset; the balanced test set is always the whole test split.
  config.test_profile = "deepsmote_test"
  config.test_examples = 0  # 0: the whole test split; else a seeded subset (smoke tests)
  config.methods = "none,class_weight,random_oversample,smote,dcgan,cgan,acgan,cvae"
  config.num_seeds = 5
  config.smote_k = 5
  # Each method adds round(ratio * (n_max - n_c)) images to class c (1.0: every class reaches n_max).
  config.synthetic_ratio = 1.0
  # With synthetic_ratio < 1, how the classifier of an image-adding method closes the remaining gap:
  # 'none' (leave it), 'class_weight' (inverse-frequency loss weights over the augmented set) or
  # 'random_oversample' (duplicate real images of each class up to n_max).
  config.fill_remainder = "none"
  # > 0: keep a generated image only if a class-weighted CNN trained on the imbalanced set gives its
  # intended class at least this probability (rejected images are redrawn).
  # 0.9 raised the balanced accuracy of every generative method in the measured :cpu run (README).
  config.filter_confidence = 0.9
  # Generated-image quality: samples per class for the Frechet distance and the CAS classifier.
  config.cas_per_class = 1_000
  # The classifier every method trains: the same CNN and schedule (Adam, fixed step count).
  config.classifier = ml_collections.ConfigDict(dict(
      conv_widths=(32, 64), hidden=128, dropout_rate=0.5, learning_rate=1e-3,
      batch_size=128, num_steps=3_000, log_every=500))
  config.evaluator_steps = 3_000  # the evaluator CNN (full balanced train split): Frechet features
  config.cas_steps = 3_000

  # One section per generator: model and training fields only (the data, profile and seed above
  # apply to every stage).
  config.generators = ml_collections.ConfigDict()
  dcgan = gan_common.training_config("dcgan")
  dcgan.batch_size = 64
  dcgan.num_steps = 3_000  # per class
  config.generators.dcgan = dcgan
  # A projection discriminator with the hinge loss (Miyato & Koyama, 2018): with concat
  # conditioning and the non-saturating loss the cGAN collapsed on the imbalanced set (docs/imbalance).
  config.generators.cgan = gan_common.training_config("cgan", loss="hinge")
  config.generators.cgan.conditioning = "projection"
  config.generators.acgan = gan_common.training_config("acgan")
  cvae = vae_common.training_config()
  cvae.num_steps = 10_000
  config.generators.cvae = cvae
  for gan in (config.generators.dcgan, config.generators.cgan, config.generators.acgan):
    gan.log_every = 500
    gan.checkpoint_every = 1_000
    gan.sample_every = 1_000
  if variant == "smoke":
    apply_smoke(config)
  elif variant.startswith("cpu"):
    apply_cpu(config)
  if variant.startswith("cpu_cgan10k"):
    config.methods = "none,class_weight,random_oversample,cgan"
    config.generators.cgan.num_steps = 10_000
  if variant == "cpu_cgan10k_mix":
    config.synthetic_ratio = 0.5
    config.fill_remainder = "random_oversample"
  return config


def apply_smoke(config):
  config.profile = "100,50,40,30,25,20,15,12,10,8"
  config.test_profile = "50,30,20,15,10,8,6,5,4,3"
  config.test_examples = 1_000
  config.num_seeds = 2
  config.smote_k = 3
  config.cas_per_class = 40
  config.classifier.conv_widths = (8, 16)
  config.classifier.hidden = 32
  config.classifier.batch_size = 32
  config.classifier.num_steps = 30
  config.classifier.log_every = 0
  config.evaluator_steps = 30
  config.cas_steps = 30
  for gan in (config.generators.dcgan, config.generators.cgan, config.generators.acgan):
    gan_common.apply_variant(gan, "smoke")
    gan.batch_size = 8
    gan.num_steps = 10
  vae_common.apply_variant(config.generators.cvae, "smoke")
  config.generators.cvae.batch_size = 8


def apply_cpu(config):
  # Measured on the 2-core CPU: the classifier trains at ~2,000 img/s, the width-32
  # cGAN/ACGAN at ~1,000 img/s; 3 seeds x 8 methods of 1,000 classifier steps dominate.
  config.num_seeds = 3
  config.classifier.num_steps = 1_000
  config.classifier.log_every = 0
  config.evaluator_steps = 1_000
  config.cas_steps = 1_000
  config.cas_per_class = 500
  for name in ("dcgan", "cgan", "acgan"):
    config.generators[name].width = 32
  config.generators.dcgan.num_steps = 500  # per class
  config.generators.cgan.num_steps = 3_000
  config.generators.acgan.num_steps = 3_000
  vae_common.apply_variant(config.generators.cvae, "cpu")
