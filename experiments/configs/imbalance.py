"""The imbalance benchmark: GAN oversampling against classic remedies (experiments.imbalance).

Variants (the text after ':' in --config=path.py:variant):
  smoke: a 300-image profile, 1,000 test images, tiny generators, 2 seeds: under 3 minutes on 2 CPU cores.
  cpu:   the real deepsmote_100 MNIST set and full test split, the cGAN and cVAE, every long-tail
         loss and six combinations, narrower generators, fewer steps, 3 seeds: sized to finish
         in under 90 minutes on 2 CPU cores.
  cpu_cgan10k: cpu, with the full config's 10,000 cGAN steps (lever 8 of docs/imbalance.md).
  cpu_cgan10k_mix: cpu_cgan10k, half of each class's gap generated and the rest real duplicates:
         the best generative training set measured (docs/imbalance.md).
  cifar10_lt: CIFAR-10-LT (lt_100) with the ResNet-32 and recipe of Cao et al. (NeurIPS 2019):
         200 epochs, random crops and flips; the generators at their full size: one GPU or TPU.
  (none): 5 seeds and full-size generators: one GPU or TPU.
"""
import ml_collections

from experiments.configs import diffusion_common
from experiments.configs import gan_common
from experiments.configs import progan_mnist
from experiments.configs import stylegan2_common
from experiments.configs import vae_common
from experiments.configs import variants
from gan_jax.data import imbalance

VARIANTS = ("", "smoke", "cpu", "cpu_cgan10k", "cpu_cgan10k_mix", "cifar10_lt")


def get_config(variant=None):
  variant = variants.check_variant(variant, VARIANTS)
  config = ml_collections.ConfigDict()
  config.seed = 0  # selects the imbalanced subset, seeds the generators and the classifier seeds
  config.dataset = "mnist"  # fashion_mnist, cifar10, tfds:<name>, folder:<path>
  variants.add_source_fields(config)
  # Train profile: a name from gan_jax.data.PROFILES or explicit counts '4000,2000,...'; 'as_is' keeps
  # the source's own counts (your already imbalanced folder) and tests on its test split as it is.
  config.profile = "deepsmote_100"
  config.imbalance_rho = 0.0  # profile 'exponential'
  config.imbalance_n_max = 0
  config.imbalance_minority_classes = ""  # profile 'step'
  config.imbalance_fraction = 0.0
  # The imbalanced test subset; the balanced test set is always the whole test split.
  config.test_profile = "deepsmote_test"
  config.test_examples = 0  # 0: the whole test split; else a seeded subset (smoke tests)
  # Methods: the classic remedies, the generators, the long-tail losses and <generator>+<loss>
  # combinations (gan_jax.protocols.imbalance.methods lists them).
  config.methods = ("none,class_weight,random_oversample,smote,dcgan,cgan,acgan,cvae,logit_adjustment,"
                    "logit_adjustment_posthoc,balanced_softmax,ldam_drw,drw,crt,mixup_drw,stylegan2")
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
  # Rounds of drawing twice a class's remaining need before its best-scoring rejects fill the rest.
  config.filter_rounds = 8
  # A combination <generator>+<loss> adds this share of each class's gap (the first images of the
  # generator's synthetic set) and leaves the rest to its loss.
  config.combination_ratio = 0.5
  # A balanced validation set of this many images per class, from the train images the profile
  # leaves out: it only chooses post-hoc logit adjustment's tau (0: tau = la_tau).
  config.validation_per_class = 100
  # Inception-v3 FID, KID and precision/recall of generated images (gan_jax.inception): 'auto' for
  # RGB data when the weights file is given (here or in $GAN_JAX_FID_WEIGHTS), 'on' or 'off'.
  config.inception_metrics = "auto"
  config.fid_weights = ""  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or its .npz
  # The long-tail remedies' published settings: logit adjustment's tau (Menon et al., ICLR 2021),
  # LDAM's margin and scale and DRW's effective-number beta (Cao et al., NeurIPS 2019), mixup's
  # alpha and Remix's kappa and tau (Chou et al., ECCV-W 2020).
  config.la_tau = 1.0
  config.ldam_max_margin = 0.5
  config.ldam_scale = 30.0
  config.drw_beta = 0.9999
  config.mixup_alpha = 1.0
  config.remix = True
  config.remix_kappa = 3.0
  config.remix_tau = 0.5
  # Generated-image quality: samples per class for the Frechet distance and the CAS classifier.
  config.cas_per_class = 1_000
  # The classifier every method trains: the same model and recipe. SGD with momentum and weight decay,
  # a linear warm-up and two decays by 0.01 at 80 % and 90 % of the steps (Cao et al.'s schedule,
  # whose first decay is where deferred re-weighting starts), and random shifts of up to 2 px.
  # model: 'cnn' (conv_widths, hidden, dropout_rate) or 'resnet' (6 * resnet_blocks + 2 layers, BatchNorm).
  config.classifier = ml_collections.ConfigDict(dict(
      model="cnn", resnet_blocks=5,
      conv_widths=(32, 64), hidden=128, dropout_rate=0.5, optimizer="sgd", learning_rate=0.05, momentum=0.9,
      weight_decay=5e-4, schedule="step", warmup_steps=100, decay_at="0.8,0.9", decay_factor=0.01,
      augment="translate", batch_size=128, num_steps=3_000, crt_steps=600, log_every=500))
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
  # Conditional StyleGAN2 with adaptive discriminator augmentation (StyleGAN2-ADA's small-data recipe):
  # the rare classes have 40-100 images, the regime ADA was made for.
  config.generators.stylegan2 = stylegan2_common.apply_style_defaults(gan_common.training_config("stylegan2"))
  config.generators.stylegan2.ada_target = 0.6
  # Conditional ProGAN (grown 4x4 -> 32x32; not a default method: add it with --config.methods). One model
  # on the whole set like the cGAN, not one per class like the DCGAN: per class it would cost ten runs of
  # four phases each, where the per-class DCGANs already trailed the one-model generators at a tenth of it.
  config.generators.progan = gan_common.training_config("progan")
  config.generators.progan.batch_size = 64
  config.generators.progan.width = 32
  config.generators.progan.fade_kimg = config.generators.progan.stable_kimg = 150.0
  config.generators.progan.num_steps = 20_000  # the 32x32 phase starts at step 11,719
  config.generators.progan.g_ema_decay = 0.999
  # Class-conditioned diffusion: latent (the Stable Diffusion recipe at this scale) and on pixels.
  for name in ("ldm", "ddpm"):
    config.generators[name] = diffusion_common.training_config(name)
  for gan in (config.generators.dcgan, config.generators.cgan, config.generators.acgan,
              config.generators.stylegan2, config.generators.progan):
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
  if variant == "cifar10_lt":
    apply_cifar10_lt(config)
  return config


def apply_cifar10_lt(config, epochs: int = 200):
  """CIFAR-10-LT as Cao et al. train it: ResNet-32, SGD 0.1 with momentum 0.9, weight decay 2e-4,
  batch 128, 5 warm-up epochs, decays by 0.01 at epochs 160 and 180 of 200, crops and flips."""
  config.dataset = "cifar10"
  config.profile = "lt_100"  # 5000 ... 50 images per class: the whole head class, so no validation set
  config.validation_per_class = 0  # post-hoc adjustment uses tau = la_tau = 1 (Menon et al.'s setting)
  # The imbalanced test subset: the same exponential shape from the 1,000 test images per class.
  config.test_profile = ",".join(str(round(1000 * 100 ** (-i / 9))) for i in range(10))
  train_images = int(sum(imbalance.profile_counts("lt_100", [imbalance.LONG_TAIL_N_MAX] * 10)))  # 12,408
  cls = config.classifier
  cls.model, cls.resnet_blocks = "resnet", 5
  cls.learning_rate, cls.weight_decay, cls.batch_size = 0.1, 2e-4, 128
  cls.num_steps = epochs * train_images // cls.batch_size
  cls.warmup_steps = 5 * train_images // cls.batch_size
  cls.crt_steps = 10 * train_images // cls.batch_size
  cls.augment = "crop_flip"
  cls.log_every = 1_000
  config.evaluator_steps = cls.num_steps // 4  # on the full, balanced 50,000 images
  config.cas_steps = cls.num_steps // 4


# Every generator in a combination, and every long-tail loss in one (the smoke run covers them all).
SMOKE_COMBINATIONS = ("cgan+logit_adjustment,cvae+balanced_softmax,cgan+ldam_drw,dcgan+drw,cgan+crt,"
                      "cvae+mixup_drw,cgan+logit_adjustment_posthoc")


def apply_smoke(config):
  # The ACGAN is left out: in the benchmark it runs the cGAN's code path (one conditional model)
  # and its training has its own smoke test (experiments/configs/acgan_mnist.py:smoke).
  # StyleGAN2 too (the same one-conditional-model path; stylegan2_mnist.py:ada_smoke tests its training).
  config.methods = config.methods.replace("acgan,", "").replace(",stylegan2", "") + ",ldm," + SMOKE_COMBINATIONS
  # The 30-step filter CNN is near chance (probabilities about 0.1): 0.1 keeps part of each draw, so
  # the smoke run exercises acceptance and redrawing instead of 8 rounds that accept nothing.
  config.filter_confidence = 0.1
  config.filter_rounds = 2  # one redraw exercises redrawing; more rounds of the untrained generators only cost time
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
  config.classifier.crt_steps = 10
  config.classifier.warmup_steps = 5
  config.classifier.log_every = 0
  config.validation_per_class = 5
  config.evaluator_steps = 30
  config.cas_steps = 30
  for gan in (config.generators.dcgan, config.generators.cgan, config.generators.acgan):
    gan_common.apply_variant(gan, "smoke")
    gan.batch_size = 8
  # The opt-in StyleGAN2 and ProGAN sections take their standalone :smoke settings (ada_smoke for
  # StyleGAN2), so their tests' steps compile to the programs of those configs' own smoke runs.
  stylegan2_common.apply_smoke(config.generators.stylegan2)
  progan_mnist.apply_smoke(config.generators.progan)
  for gan in (config.generators.dcgan, config.generators.cgan, config.generators.acgan,
              config.generators.stylegan2, config.generators.progan):
    gan.num_steps = 10
  vae_common.apply_variant(config.generators.cvae, "smoke")
  config.generators.cvae.batch_size = 8
  # The diffusion models' own :smoke sizes: the denoiser step and sampler then compile to the
  # programs of the diffusion smoke tests, which a shared compilation cache holds once.
  for name in ("ldm", "ddpm"):
    diffusion_common.apply_variant(config.generators[name], "smoke")


# The :cpu runs: the classic remedies, the two conditional generators (one model each; the
# per-class DCGANs and the ACGAN trailed them in every measured run and cost 27 of the 2-core
# budget's minutes), every long-tail loss, and each generator with the three losses that need
# no second stage.
CPU_METHODS = ("none,class_weight,random_oversample,smote,cgan,cvae,logit_adjustment,logit_adjustment_posthoc,"
               "balanced_softmax,ldam_drw,drw,crt,mixup_drw,cgan+logit_adjustment,cgan+balanced_softmax,cgan+drw,"
               "cvae+logit_adjustment,cvae+balanced_softmax,cvae+drw")


def apply_cpu(config):
  # Measured on the 2-core CPU: the classifier trains at ~1,100 img/s, so 3 seeds x 17
  # classifiers of 1,000 batches of 64 take about an hour; batch 64 at half the rate of 128.
  config.methods = CPU_METHODS
  config.num_seeds = 3
  config.classifier.batch_size = 64
  config.classifier.learning_rate = 0.025
  config.classifier.num_steps = 1_000
  config.classifier.crt_steps = 200
  config.classifier.log_every = 0
  config.evaluator_steps = 1_000
  config.cas_steps = 1_000
  config.cas_per_class = 500
  for name in ("ldm", "ddpm"):  # not among CPU_METHODS; sized for the 2 cores when a user adds them
    diffusion_common.apply_variant(config.generators[name], "cpu")
  for name in ("dcgan", "cgan", "acgan"):
    config.generators[name].width = 32
  config.generators.dcgan.num_steps = 500  # per class
  # Not among CPU_METHODS (add it with --config.methods): sized like the cGAN's wall time on 2 cores.
  # ADA's p may sweep [0, 1] within 100k images, so it can react within the short run.
  config.generators.stylegan2.width = 16
  config.generators.stylegan2.num_steps = 3_000
  config.generators.stylegan2.ada_kimg = 100
  config.generators.progan.width = 16
  config.generators.progan.num_steps = 6_000
  config.generators.progan.fade_kimg = config.generators.progan.stable_kimg = 32.0  # 500 steps each
  config.generators.cgan.num_steps = 3_000
  config.generators.acgan.num_steps = 3_000
  vae_common.apply_variant(config.generators.cvae, "cpu")
