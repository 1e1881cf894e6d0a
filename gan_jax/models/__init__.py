"""GAN model families: one record per family, and `build_gan`, the single place that assembles them.

A `GANFamily` says what a family's generator and discriminator are (conditional,
projection-capable, auxiliary classifier) and how the paper that introduced it
trained it (`Recipe`), so configs, the train step and the benchmarks read one
definition instead of testing model names.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models import dcgan
from gan_jax.models import layers
from gan_jax.models import mlp
from gan_jax.models import progan_gan
from gan_jax.models import stylegan2_gan
from gan_jax.models.classifier import CNNClassifier


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A family's published training settings (what its config starts from)."""
  loss: str = "non_saturating"
  d_steps: int = 1
  gp_weight: float = 0.0
  lr_g: float = 2e-4
  lr_d: float = 2e-4
  b1: float = 0.5
  b2: float = 0.999


@dataclasses.dataclass(frozen=True)
class GANFamily:
  """What a GAN family is.

  Attributes:
    name: registry name (config.model).
    convolutional: DCGAN backbone (else the fully connected MLP GAN).
    conditional: G takes labels.
    label_conditioned_d: D takes labels (its conditioning comes from config.conditioning).
    aux_classifier: D predicts the class (ACGAN).
    dropout_rate: D's default dropout.
    recipe: the published training settings.
    backbone: the networks: 'mlp', 'dcgan' (the DCGAN-style convolutional pair of CONV_SIZES),
      'stylegan2' (mapping + synthesis network, residual discriminator) or 'progan' (networks
      grown phase by phase, see `progan_gan`).
  """
  name: str
  convolutional: bool
  conditional: bool = False
  label_conditioned_d: bool = False
  aux_classifier: bool = False
  dropout_rate: float = 0.4
  recipe: Recipe = Recipe()
  backbone: str = "dcgan"


FAMILIES: dict[str, GANFamily] = {f.name: f for f in (
    # Goodfellow et al. (2014).
    GANFamily("mlp_gan", convolutional=False, dropout_rate=0.3, backbone="mlp"),
    # Radford et al. (2016): Adam 2e-4, beta1 0.5.
    GANFamily("dcgan", convolutional=True),
    # Mirza & Osindero (2014), projection D of Miyato & Koyama (2018).
    GANFamily("cgan", convolutional=True, conditional=True, label_conditioned_d=True),
    # Odena et al. (2017).
    GANFamily("acgan", convolutional=True, conditional=True, aux_classifier=True),
    # Gulrajani et al. (2017): n_critic 5, lambda 10, Adam 1e-4, betas (0, 0.9), no dropout.
    GANFamily("wgan_gp", convolutional=True, dropout_rate=0.0,
              recipe=Recipe(loss="wasserstein", d_steps=5, gp_weight=10.0, lr_g=1e-4, lr_d=1e-4, b1=0.0, b2=0.9)),
    # Karras et al. (CVPR 2020), conditional as in StyleGAN2-ADA (NeurIPS 2020): non-saturating loss with
    # lazy R1 (config.r1_gamma), Adam 2.5e-3 with betas (0, 0.99) (their CIFAR-10 setting), projection D.
    GANFamily("stylegan2", convolutional=True, conditional=True, label_conditioned_d=True, dropout_rate=0.0,
              recipe=Recipe(lr_g=2.5e-3, lr_d=2.5e-3, b1=0.0, b2=0.99), backbone="stylegan2"),
    # Karras et al. (ICLR 2018): WGAN-GP with one critic step, lambda 10 (and the drift term, config.drift_weight),
    # Adam 1e-3 with betas (0, 0.99); conditional through a label embedding in G and projection in D.
    GANFamily("progan", convolutional=True, conditional=True, label_conditioned_d=True, dropout_rate=0.0,
              recipe=Recipe(loss="wasserstein", gp_weight=10.0, lr_g=1e-3, lr_d=1e-3, b1=0.0, b2=0.99),
              backbone="progan"),
)}
GAN_MODELS = tuple(FAMILIES)
# Image sides the convolutional families are built for (28x28 MNIST-like, 32x32 CIFAR-like, and
# 64 and 128 px for a user's folder): generator, discriminator, default latent size.
CONV_SIZES = {28: (dcgan.dcgan28_generator, dcgan.dcgan28_discriminator, 100),
              32: (dcgan.dcgan32_generator, dcgan.dcgan32_discriminator, 128),
              64: (dcgan.dcgan64_generator, dcgan.dcgan64_discriminator, 128),
              128: (dcgan.dcgan128_generator, dcgan.dcgan128_discriminator, 128)}


@dataclasses.dataclass(frozen=True)
class GAN:
  """A generator/discriminator pair and how to call them.

  Attributes:
    name: registry name.
    generator: module called as G(z, labels, train=...) -> images in `output_range`.
    discriminator: module called as D(images, labels, train=...) -> (logit [N], class logits or None).
    z_dim: latent size.
    num_classes: classes of the data set.
    conditional: G takes labels (cGAN, ACGAN).
    d_takes_labels: D takes labels (cGAN with concat or projection conditioning).
    aux_classifier: D predicts the class (ACGAN).
    output_range: (lo, hi) of generated pixels; real data is scaled to match.
    stage: the growth phase of a progressive GAN (None for the others).
    fade_reals: `(images, alpha) -> images` of a progressive GAN's phase (the reals' fade-in).
  """
  name: str
  generator: nn.Module
  discriminator: nn.Module
  z_dim: int
  num_classes: int
  conditional: bool
  d_takes_labels: bool
  aux_classifier: bool
  output_range: tuple[float, float]
  stage: int | None = None
  fade_reals: Callable[[Any, Any], Any] | None = None

  def with_alpha(self, alpha) -> "GAN":
    """The pair at fade coefficient `alpha` (a traced scalar is fine: it is a module attribute)."""
    return dataclasses.replace(self, generator=self.generator.clone(alpha=alpha),
                               discriminator=self.discriminator.clone(alpha=alpha))


def get_family(name: str) -> GANFamily:
  if name not in FAMILIES:
    raise ValueError(f"Unknown model '{name}'; choose one of: {', '.join(GAN_MODELS)}")
  return FAMILIES[name]


def build_gan(name: str, *, image_shape: Sequence[int], num_classes: int, z_dim: int | None = None,
              width: int = 64, conditioning: str = "concat", dropout_rate: float | None = None,
              upsample_impl: str = "auto", spectral_norm: bool = False, dtype: Any = jnp.float32,
              mapping_layers: int = 2, style_mixing_prob: float = 0.9, truncation_psi: float = 1.0,
              stage: int | None = None) -> GAN:
  """Builds the named GAN for images of `image_shape` (H, W, C).

  Args:
    name: one of GAN_MODELS.
    image_shape: (S, S, C) with S in CONV_SIZES for the convolutional models; any for mlp_gan.
    num_classes: classes of the data set (used by the conditional families).
    z_dim: latent size; defaults to 100 (28x28, MLP) or 128 (32 px and larger).
    width: base channel count of the convolutional models; the MLP's hidden sizes are 4, 8, 16 x width.
    conditioning: how a label-conditioned discriminator sees the label: 'concat' or 'projection'.
    dropout_rate: discriminator dropout; None takes the family's.
    upsample_impl: generator up-sampling implementation (see gan_jax.kernels.upsample).
    spectral_norm: spectrally normalised discriminator (convolutional families only).
    dtype: computation dtype of the convolutional models.
    mapping_layers: depth of StyleGAN2's mapping network.
    style_mixing_prob: share of StyleGAN2's training samples whose styles mix two latents.
    truncation_psi: StyleGAN2's sampling-time truncation towards the average w (1: none).
    stage: ProGAN's growth phase (0: 4x4); None: the last, whose parameters include every phase's.

  Raises:
    ValueError: unknown name, conditioning, or unsupported image size.
  """
  family = get_family(name)
  layers.check_conditioning(conditioning)
  height, _, channels = image_shape
  dropout_rate = family.dropout_rate if dropout_rate is None else dropout_rate
  d_conditioning = conditioning if family.label_conditioned_d else "none"
  if family.backbone == "stylegan2":
    if spectral_norm:
      raise ValueError("spectral_norm is implemented for the DCGAN discriminators; stylegan2 uses R1 instead")
    return _build_stylegan2(image_shape, num_classes, z_dim, width, mapping_layers, style_mixing_prob,
                            truncation_psi)
  if family.backbone == "progan":
    if spectral_norm:
      raise ValueError("spectral_norm is implemented for the DCGAN discriminators; progan uses the gradient penalty")
    return _build_progan(image_shape, num_classes, z_dim, width, stage)
  if not family.convolutional:
    if spectral_norm:
      raise ValueError(f"spectral_norm is implemented for the convolutional discriminators; {name} has none")
    # width 64 gives the classic plan: G 256-512-1024, D 1024-512-256.
    hidden = (4 * width, 8 * width, 16 * width)
    return GAN(name, mlp.MLPGenerator(image_shape=tuple(image_shape), hidden=hidden),
               mlp.MLPDiscriminator(hidden=hidden[::-1], dropout_rate=dropout_rate),
               z_dim or 100, num_classes, False, False, False, (0.0, 1.0))
  if height not in CONV_SIZES or image_shape[1] != height:
    raise ValueError(f"Convolutional GANs support {', '.join(f'{s}x{s}' for s in CONV_SIZES)} images, "
                     f"got {'x'.join(map(str, image_shape[:2]))}; set config.image_size to one of "
                     f"{', '.join(map(str, CONV_SIZES))}")
  make_g, make_d, default_z = CONV_SIZES[height]
  generator = make_g(width, channels, num_classes=num_classes if family.conditional else 0,
                     upsample_impl=upsample_impl, dtype=dtype)
  discriminator = make_d(width, dropout_rate=dropout_rate, num_classes=num_classes, conditioning=d_conditioning,
                         aux_classifier=family.aux_classifier, spectral_norm=spectral_norm, dtype=dtype)
  return GAN(name, generator, discriminator, z_dim or default_z, num_classes, family.conditional,
             d_conditioning != "none", family.aux_classifier, (-1.0, 1.0))


def _build_stylegan2(image_shape, num_classes, z_dim, width, mapping_layers, style_mixing_prob,
                     truncation_psi) -> GAN:
  """Conditional StyleGAN2 for square images of any side up to a power of two times 4; z and w of 4 x width."""
  height, image_width, channels = image_shape
  if height != image_width:
    raise ValueError(f"stylegan2 needs square images, got {height}x{image_width}")
  widths = stylegan2_gan.channel_plan(height, width)
  w_dim = 4 * width
  generator = stylegan2_gan.StyleGenerator(height, channels, widths, w_dim, mapping_layers, num_classes,
                                           style_mixing_prob, truncation_psi)
  discriminator = stylegan2_gan.StyleDiscriminator(height, tuple(reversed(widths)), num_classes)
  return GAN("stylegan2", generator, discriminator, z_dim or w_dim, num_classes, True, True, False, (-1.0, 1.0))


def _build_progan(image_shape, num_classes, z_dim, width, stage) -> GAN:
  """Conditional ProGAN at growth phase `stage` for square images; z of 4 x width (the 4x4 block's channels)."""
  height, image_width, channels = image_shape
  if height != image_width:
    raise ValueError(f"progan needs square images, got {height}x{image_width}")
  widths = stylegan2_gan.channel_plan(height, width)
  last = progan_gan.num_stages(height) - 1
  stage = last if stage is None else stage
  if not 0 <= stage <= last:
    raise ValueError(f"progan stage must lie in [0, {last}] for {height}x{height} images, got {stage}")
  generator = progan_gan.PhaseGenerator(height, channels, widths, num_classes, stage)
  discriminator = progan_gan.PhaseDiscriminator(height, widths, num_classes, stage)
  return GAN("progan", generator, discriminator, z_dim or widths[0], num_classes, True, True, False, (-1.0, 1.0),
             stage=stage, fade_reals=functools.partial(progan_gan.fade_reals, stage=stage))


__all__ = ["FAMILIES", "GAN", "GANFamily", "GAN_MODELS", "Recipe", "build_gan", "get_family", "CNNClassifier"]
