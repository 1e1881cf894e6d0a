"""GAN model families and the registry that builds them from a model name.

`build_gan` is the single place that knows which generator/discriminator pair
each model name means, so steps, loops and benchmarks stay family-agnostic.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models import dcgan
from gan_jax.models import layers
from gan_jax.models import mlp
from gan_jax.models.classifier import CNNClassifier

GAN_MODELS = ("mlp_gan", "dcgan", "cgan", "acgan", "wgan_gp")


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


def build_gan(name: str, *, image_shape: Sequence[int], num_classes: int, z_dim: int | None = None,
              width: int = 64, conditioning: str = "concat", dropout_rate: float | None = None,
              upsample_impl: str = "auto", spectral_norm: bool = False, dtype: Any = jnp.float32) -> GAN:
  """Builds the named GAN for images of `image_shape` (H, W, C).

  Args:
    name: one of GAN_MODELS.
    image_shape: (28, 28, C) or (32, 32, C) for the convolutional models; any for mlp_gan.
    num_classes: classes of the data set (used by cgan / acgan).
    z_dim: latent size; defaults to 100 (28x28, MLP) or 128 (32x32).
    width: base channel count of the convolutional models; the MLP's hidden sizes are 4, 8, 16 x width.
    conditioning: cgan discriminator conditioning, 'concat' or 'projection'.
    dropout_rate: discriminator dropout; defaults per family (0.3 MLP, 0.4 DCGAN, 0 critic).
    upsample_impl: generator up-sampling implementation (see gan_jax.models.upsample).
    spectral_norm: spectrally normalised discriminator (convolutional families only).
    dtype: computation dtype of the convolutional models.

  Raises:
    ValueError: unknown name, conditioning, or unsupported image size.
  """
  if name not in GAN_MODELS:
    raise ValueError(f"Unknown model '{name}'; choose one of: {', '.join(GAN_MODELS)}")
  layers.check_conditioning(conditioning)
  height, _, channels = image_shape
  conditional = name in ("cgan", "acgan")
  g_classes = num_classes if conditional else 0
  d_conditioning = conditioning if name == "cgan" else "none"
  aux = name == "acgan"

  if spectral_norm and name == "mlp_gan":
    raise ValueError("spectral_norm is implemented for the convolutional discriminators; mlp_gan has none")
  if name == "mlp_gan":
    # width 64 gives the classic plan: G 256-512-1024, D 1024-512-256.
    hidden = (4 * width, 8 * width, 16 * width)
    return GAN(name, mlp.MLPGenerator(image_shape=tuple(image_shape), hidden=hidden),
               mlp.MLPDiscriminator(hidden=hidden[::-1], dropout_rate=0.3 if dropout_rate is None else dropout_rate),
               z_dim or 100, num_classes, False, False, False, (0.0, 1.0))

  if height == 28:
    make_g, make_d, default_z = dcgan.dcgan28_generator, dcgan.dcgan28_discriminator, 100
  elif height == 32:
    make_g, make_d, default_z = dcgan.dcgan32_generator, dcgan.dcgan32_discriminator, 128
  else:
    raise ValueError(f"Convolutional GANs support 28x28 or 32x32 images, got {tuple(image_shape)}")
  if dropout_rate is None:
    dropout_rate = 0.0 if name == "wgan_gp" else 0.4
  generator = make_g(width, channels, num_classes=g_classes, upsample_impl=upsample_impl, dtype=dtype)
  discriminator = make_d(width, dropout_rate=dropout_rate, num_classes=num_classes,
                         conditioning=d_conditioning, aux_classifier=aux, spectral_norm=spectral_norm,
                         dtype=dtype)
  return GAN(name, generator, discriminator, z_dim or default_z, num_classes, conditional,
             d_conditioning != "none", aux, (-1.0, 1.0))


__all__ = ["GAN", "GAN_MODELS", "build_gan", "CNNClassifier"]
