"""StyleGAN2 (Karras et al., CVPR 2020) as a GAN of this project: G(z, labels, train) and D(images, labels, train).

The generator is the mapping network and the skip-connection synthesis network of
`gan_jax.models.stylegan2`, plus what training and sampling add around them:

- style mixing regularisation (training only): with probability `style_mixing_prob` a second
  latent's w takes over from a random crossover layer on, so adjacent styles cannot rely on
  each other (the paper's sec. 3.1, probability 0.9);
- the running average of w (`batch_stats/w_avg`, updated in training mode like BatchNorm's
  statistics), which the truncation trick pulls towards at sampling time (`truncation_psi`);
- per-pixel noise: fresh draws from the 'noise' PRNG stream in training, one fixed draw at
  sampling time (the official sampler's constant noise mode), so a sampler is deterministic.

The networks work at a resolution of 4 * 2^k; other image sizes (28x28 MNIST) are generated at
the next such size and centre-cropped, and the discriminator pads its input back with the
background value, so real and generated images meet D identically.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import stylegan2

W_AVG_DECAY = 0.995  # the official tracking rate of w_avg


def network_size(image_size: int) -> int:
  """The smallest 4 * 2^k that holds an image of side `image_size`."""
  size = 4
  while size < image_size:
    size *= 2
  return size


def channel_plan(image_size: int, width: int) -> tuple[int, ...]:
  """Channels per resolution 4, 8, ..., network_size: 4 x width up to 8x8, halving per doubling, at least width."""
  sizes = stylegan2.resolutions(network_size(image_size))
  return tuple(max(width, 4 * width // max(1, size // 8)) for size in sizes)


class StyleGenerator(nn.Module):
  """z [B, z_dim] (and labels [B]) -> images [B, image_size, image_size, channels] in [-1, 1] (unclipped).

  Attributes:
    image_size: side of the generated images.
    channels: image channels.
    widths: channels per resolution 4, 8, ..., network_size(image_size).
    w_dim: size of w.
    mapping_layers: depth of the mapping network (8 at full size, 2 for 32x32 in StyleGAN2-ADA).
    num_classes: > 0: conditional (the label embedding joins z in the mapping network).
    style_mixing_prob: share of training samples whose styles mix two latents.
    truncation_psi: sampling-time truncation towards w_avg (1: none).
  """
  image_size: int = 32
  channels: int = 3
  widths: Sequence[int] = (256, 256, 128, 64)
  w_dim: int = 256
  mapping_layers: int = 2
  num_classes: int = 0
  style_mixing_prob: float = 0.9
  truncation_psi: float = 1.0

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    size = network_size(self.image_size)
    mapping = stylegan2.MappingNetwork(self.w_dim, self.mapping_layers, self.num_classes, name="mapping")
    synthesis = stylegan2.SynthesisNetwork(size, self.channels, tuple(self.widths), name="synthesis")
    num_ws = synthesis.num_ws
    w = mapping(z, labels)
    w_avg = self.variable("batch_stats", "w_avg", jnp.zeros, (self.w_dim,))
    if train:
      if not self.is_initializing():
        w_avg.value = stylegan2.update_w_avg(w_avg.value, jax.lax.stop_gradient(w), W_AVG_DECAY)
      ws = stylegan2.broadcast_styles(w, num_ws)
      if self.style_mixing_prob > 0:
        z_key, layer_key, coin_key = jax.random.split(self.make_rng("noise"), 3)
        w2 = mapping(jax.random.normal(z_key, z.shape, z.dtype), labels)
        crossover = jax.random.randint(layer_key, (z.shape[0],), 1, num_ws)
        mixed = jax.random.uniform(coin_key, (z.shape[0],)) < self.style_mixing_prob
        ws = stylegan2.mix_styles(w, w2, num_ws, jnp.where(mixed, crossover, num_ws))
      noise_key = self.make_rng("noise")
    else:
      ws = stylegan2.broadcast_styles(stylegan2.truncate(w, w_avg.value, self.truncation_psi), num_ws)
      noise_key = jax.random.PRNGKey(0)
    images = synthesis(ws, noise_key)
    return center_crop(images, self.image_size)


class StyleDiscriminator(nn.Module):
  """images [B, S, S, C] (and labels) -> (logits [B], None): the residual discriminator, by projection if conditional.

  Attributes:
    image_size: side of the images it judges (padded to network_size with `pad_value`).
    widths: channels per resolution network_size, ..., 8, then 4x4.
    num_classes: > 0: projection conditioning.
    pad_value: the background value images are padded with (-1: black in [-1, 1]).
  """
  image_size: int = 32
  widths: Sequence[int] = (64, 128, 256, 256)
  num_classes: int = 0
  pad_value: float = -1.0

  @nn.compact
  def __call__(self, images, labels=None, train: bool = False):
    del train  # no dropout or batch statistics
    size = network_size(self.image_size)
    images = center_pad(images, size, self.pad_value)
    logits = stylegan2.ResidualDiscriminator(size, tuple(self.widths), self.num_classes, name="net")(images, labels)
    return logits, None


def center_crop(images: jax.Array, side: int) -> jax.Array:
  """The central side x side window of [B, S, S, C] images (S >= side)."""
  offset = (images.shape[1] - side) // 2
  return images[:, offset:offset + side, offset:offset + side]


def center_pad(images: jax.Array, side: int, value: float) -> jax.Array:
  """[B, s, s, C] images padded with `value` to side x side, the inverse of `center_crop`."""
  before = (side - images.shape[1]) // 2
  after = side - images.shape[1] - before
  if before == after == 0:
    return images
  return jnp.pad(images, ((0, 0), (before, after), (before, after), (0, 0)), constant_values=value)
