"""DCGAN generators and discriminators (Radford et al., 2016) for 28, 32, 64 and 128 px images.

One generator and one discriminator class cover both resolutions: the resolution
only changes the stem size and the number of stride-2 stages, so the presets
`dcgan28_*` and `dcgan32_*` below pin the published layer plans.
The same classes, given `num_classes`, become the conditional GAN, the ACGAN and
the WGAN-GP critic (no batch norm, no dropout).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.kernels import downsample
from gan_jax.models import layers
from gan_jax.kernels import upsample


class DCGANGenerator(nn.Module):
  """dense -> stem (HxWxC0), BatchNorm, ReLU, then transposed-conv stages, tanh output.

  Attributes:
    stem_size: spatial side of the dense stem (7 for 28x28, 2 for 32x32).
    stem_features: channels of the stem.
    stages: (features, stride) of each hidden up-sampling stage.
    out_channels: image channels; the last stage has stride 2.
    kernel_size: transposed-convolution kernel side.
    num_classes: > 0 makes G(z, y) conditional through a concatenated label embedding.
    upsample_impl: how stride-2 stages are computed, see `gan_jax.kernels.upsample`.
    dtype: computation dtype (parameters stay float32).
  """
  stem_size: int
  stem_features: int
  stages: Sequence[tuple[int, int]]
  out_channels: int
  kernel_size: int = 5
  num_classes: int = 0
  embed_dim: int = 50
  upsample_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = True) -> jax.Array:
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)
    x = layers.concat_label_embedding(z, labels, self.num_classes, self.embed_dim).astype(self.dtype)
    x = nn.Dense(self.stem_size * self.stem_size * self.stem_features, use_bias=False, dtype=self.dtype)(x)
    x = x.reshape(z.shape[0], self.stem_size, self.stem_size, self.stem_features)
    x = nn.relu(norm()(x))
    for features, stride in self.stages:
      x = upsample.UpConv(features, self.kernel_size, stride, use_bias=False, impl=self.upsample_impl,
                          dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    x = upsample.UpConv(self.out_channels, self.kernel_size, 2, use_bias=True, impl=self.upsample_impl,
                        dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """Strided convolutions (no pooling, no dense hidden layer), LeakyReLU(0.2), dropout.

  Attributes:
    widths: channels of the stride-2 convolutions.
    dropout_rate: 0 for a WGAN-GP critic.
    num_classes, conditioning, aux_classifier: see `layers.DiscriminatorHead`;
      `concat` conditioning feeds the label as an extra input channel.
    spectral_norm: spectrally normalise every convolution and the head
      (`layers.spectral_normalize`; Miyato et al., 2018).
  """
  widths: Sequence[int] = (64, 128)
  kernel_size: int = 5
  dropout_rate: float = 0.4
  num_classes: int = 0
  conditioning: str = "none"
  aux_classifier: bool = False
  spectral_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array | None = None, train: bool = True):
    layers.check_conditioning(self.conditioning)
    x = images
    if self.conditioning == "concat":
      x = layers.LabelPlane(self.num_classes, images.shape[1], images.shape[2])(x, labels)
    x = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      # Named as nn.Conv names itself: parameters and checkpoints are those of nn.Conv.
      x = downsample.StridedConv(width, self.kernel_size, 2, spectral_norm=self.spectral_norm, dtype=self.dtype,
                                 name=f"Conv_{i}")(x)
      x = nn.leaky_relu(x, 0.2)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    return layers.DiscriminatorHead(self.num_classes, self.conditioning, self.aux_classifier,
                                    self.spectral_norm)(x, labels)


def dcgan28_generator(width: int = 64, channels: int = 1, **kwargs) -> DCGANGenerator:
  """dense -> 7x7x4w, ConvT 5x5 -> 7x7x2w, -> 14x14xw, -> 28x28xC (the TF DCGAN tutorial plan)."""
  return DCGANGenerator(stem_size=7, stem_features=4 * width, stages=((2 * width, 1), (width, 2)),
                        out_channels=channels, **kwargs)


def dcgan28_discriminator(width: int = 64, **kwargs) -> DCGANDiscriminator:
  """28 -> 14 -> 7 with 64, 128 channels (for width 64), flatten -> 1."""
  return DCGANDiscriminator(widths=(width, 2 * width), **kwargs)


def dcgan32_generator(width: int = 64, channels: int = 3, **kwargs) -> DCGANGenerator:
  """z(128) -> dense 2x2x8w (2048 for w=64) -> 4x4x4w -> 8x8x2w -> 16x16xw -> 32x32xC."""
  return DCGANGenerator(stem_size=2, stem_features=8 * width,
                        stages=((4 * width, 2), (2 * width, 2), (width, 2)),
                        out_channels=channels, kernel_size=4, **kwargs)


def dcgan32_discriminator(width: int = 64, **kwargs) -> DCGANDiscriminator:
  """32 -> 16 -> 8 -> 4 -> 2 with w, 2w, 4w, 8w channels, flatten (2048 for w=64) -> 1."""
  return DCGANDiscriminator(widths=(width, 2 * width, 4 * width, 8 * width), kernel_size=4, **kwargs)


def dcgan64_generator(width: int = 64, channels: int = 3, **kwargs) -> DCGANGenerator:
  """z(128) -> dense 4x4x8w -> 8x8x4w -> 16x16x2w -> 32x32xw -> 64x64xC (Radford et al.'s 64 px plan)."""
  return DCGANGenerator(stem_size=4, stem_features=8 * width,
                        stages=((4 * width, 2), (2 * width, 2), (width, 2)),
                        out_channels=channels, kernel_size=4, **kwargs)


def dcgan64_discriminator(width: int = 64, **kwargs) -> DCGANDiscriminator:
  """64 -> 32 -> 16 -> 8 -> 4 with w, 2w, 4w, 8w channels, flatten -> 1."""
  return DCGANDiscriminator(widths=(width, 2 * width, 4 * width, 8 * width), kernel_size=4, **kwargs)


def dcgan128_generator(width: int = 64, channels: int = 3, **kwargs) -> DCGANGenerator:
  """The 64 px plan with one more stage: 4x4x8w -> 8x8x8w -> 16x16x4w -> 32x32x2w -> 64x64xw -> 128x128xC."""
  return DCGANGenerator(stem_size=4, stem_features=8 * width,
                        stages=((8 * width, 2), (4 * width, 2), (2 * width, 2), (width, 2)),
                        out_channels=channels, kernel_size=4, **kwargs)


def dcgan128_discriminator(width: int = 64, **kwargs) -> DCGANDiscriminator:
  """128 -> 64 -> ... -> 4 with w, 2w, 4w, 8w, 8w channels (capped at 8w, as the generator), flatten -> 1."""
  return DCGANDiscriminator(widths=(width, 2 * width, 4 * width, 8 * width, 8 * width), kernel_size=4, **kwargs)
