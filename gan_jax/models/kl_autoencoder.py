"""The first stage of latent diffusion: a KL-regularised convolutional autoencoder with a spatial latent.

Two stride-2 stages map 28x28x1 to 7x7x`latent_channels` and 32x32x3 to 8x8x`latent_channels`
(Rombach et al. use f = 8 on 256 px images; f = 4 keeps 7x7 latents on MNIST). The encoder gives
a diagonal Gaussian per latent pixel; the small KL weight of the training loss (1e-6 in latent
diffusion) keeps the latent space from drifting to arbitrary scales, and the diffusion model
sees latents multiplied by a scale factor computed from the data (`latent_scale`).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import unet

DOWNSAMPLING = 4


class _Block(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.features, (3, 3))(nn.silu(nn.GroupNorm(unet.norm_groups(x.shape[-1]))(x)))
    h = nn.Conv(self.features, (3, 3))(nn.silu(nn.GroupNorm(unet.norm_groups(self.features))(h)))
    skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1))(x)
    return skip + h


class Encoder(nn.Module):
  latent_channels: int
  widths: Sequence[int]

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.widths[0], (3, 3))(x)
    for width in self.widths:
      h = nn.Conv(width, (3, 3), strides=(2, 2))(_Block(width)(h))
    h = nn.silu(nn.GroupNorm(unet.norm_groups(h.shape[-1]))(_Block(self.widths[-1])(h)))
    moments = nn.Conv(2 * self.latent_channels, (3, 3))(h)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)


class Decoder(nn.Module):
  image_shape: Sequence[int]
  widths: Sequence[int]

  @nn.compact
  def __call__(self, z):
    h = _Block(self.widths[-1])(nn.Conv(self.widths[-1], (3, 3))(z))
    sizes = [tuple(self.image_shape[:2])]
    for _ in self.widths[:-1]:
      sizes.append(tuple((s + 1) // 2 for s in sizes[-1]))
    for width, size in zip(reversed(self.widths), reversed(sizes)):
      h = jax.image.resize(h, (h.shape[0],) + size + (h.shape[-1],), "nearest")
      h = _Block(width)(nn.Conv(width, (3, 3))(h))
    h = nn.silu(nn.GroupNorm(unet.norm_groups(h.shape[-1]))(h))
    return nn.Conv(self.image_shape[-1], (3, 3))(h)


class KLAutoencoder(nn.Module):
  """Images in [-1, 1] [B, H, W, C] <-> latents [B, ceil(H/4), ceil(W/4), latent_channels]."""
  image_shape: Sequence[int]
  latent_channels: int = 4
  widths: Sequence[int] = (32, 64)

  def setup(self):
    if len(self.widths) != 2:
      raise ValueError(f"the first stage down-samples {DOWNSAMPLING}x: widths needs 2 entries, got {tuple(self.widths)}")
    self.encoder = Encoder(self.latent_channels, self.widths)
    self.decoder = Decoder(self.image_shape, self.widths)

  def encode(self, x):
    """(mean, log-variance) of the latent Gaussian."""
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)

  def __call__(self, x, key):
    mean, logvar = self.encode(x)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
    return self.decode(z), mean, logvar


def latent_shape(image_shape: Sequence[int], latent_channels: int) -> tuple[int, int, int]:
  h, w = (-(-s // DOWNSAMPLING) for s in image_shape[:2])
  return (h, w, latent_channels)


def output_kernel(params) -> jax.Array:
  """The kernel of the decoder's last convolution (the layer that writes the image channels).

  The adversarial term of the first stage is weighted by the ratio of the reconstruction's and the
  generator loss's gradient norms at this layer (Esser et al., CVPR 2021, eq. 7).
  """
  decoder = params["decoder"]
  convs = [name for name in decoder if name.startswith("Conv_")]
  return decoder[max(convs, key=lambda name: int(name.split("_")[1]))]["kernel"]

