"""Progressive growing of GANs (Karras et al., ICLR 2018): networks that grow 4x4 -> 8x8 -> ... with fade-in.

A network is built for one phase at a time (`stage`: 0 is 4x4, 1 is 8x8, ...), so each phase
has static shapes and its own jitted step; `alpha` (a traced input, not a retrace) blends the
new block in: at alpha = 0 the output is the previous resolution's, up-sampled; at alpha = 1
the new block alone. Parameter names do not depend on the stage, so a phase starts from the
previous phase's parameters (the new block's are initialised fresh). Layers use the equalised
learning rate (`stylegan2.EqualizedConv`/`EqualizedDense`), the generator pixelwise feature
normalisation, the discriminator a minibatch-stddev layer.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import stylegan2

LEAKY_SLOPE = 0.2


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Each pixel's feature vector scaled to unit average square (the paper's sec. 4.2)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def _act(x):
  return nn.leaky_relu(x, LEAKY_SLOPE)


def upsample2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x up-sampling."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downsample2(x: jax.Array) -> jax.Array:
  """2x2 average pooling."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class Generator(nn.Module):
  """z [B, z_dim] -> images [B, 4 * 2^stage, 4 * 2^stage, channels] for the phase `stage`.

  Attributes:
    widths: channels of each resolution 4, 8, 16, ... (its length bounds the stages).
    channels: image channels.
    num_classes: > 0 concatenates a label embedding to z (conditional variant).
  """
  widths: Sequence[int] = (256, 256, 128, 64)
  channels: int = 1
  num_classes: int = 0

  @nn.compact
  def __call__(self, z, stage: int, alpha, labels=None):
    if not 0 <= stage < len(self.widths):
      raise ValueError(f"stage {stage} outside the {len(self.widths)} resolutions of the generator")
    x = z
    if self.num_classes:
      x = jnp.concatenate([x, stylegan2.EqualizedDense(z.shape[-1], name="embed")(
          jax.nn.one_hot(labels, self.num_classes))], axis=-1)
    x = pixel_norm(x)
    x = _act(stylegan2.EqualizedDense(16 * self.widths[0], name="b4_dense")(x)).reshape(-1, 4, 4, self.widths[0])
    x = pixel_norm(_act(stylegan2.EqualizedConv(self.widths[0], 3, name="b4_conv")(pixel_norm(x))))
    to_rgb = lambda h, s: stylegan2.EqualizedConv(self.channels, 1, name=f"b{4 << s}_torgb")(h)
    # Every earlier phase's toRGB exists in every later phase (unused ones cost a 1x1 convolution),
    # so one parameter tree serves every phase up to this one.
    rgbs = [to_rgb(x, 0)]
    for s in range(1, stage + 1):
      x = upsample2(x)
      for j in range(2):
        x = pixel_norm(_act(stylegan2.EqualizedConv(self.widths[s], 3, name=f"b{4 << s}_conv{j}")(x)))
      rgbs.append(to_rgb(x, s))
    if stage == 0:
      return rgbs[0]
    faded = upsample2(rgbs[-2])
    return faded + alpha * (rgbs[-1] - faded)


class Discriminator(nn.Module):
  """images of the phase `stage` -> logits [B] (projection on the label when `num_classes` > 0)."""
  widths: Sequence[int] = (256, 256, 128, 64)  # per resolution 4, 8, 16, ... (as the generator's)
  num_classes: int = 0

  @nn.compact
  def __call__(self, images, stage: int, alpha, labels=None):
    if not 0 <= stage < len(self.widths):
      raise ValueError(f"stage {stage} outside the {len(self.widths)} resolutions of the discriminator")
    from_rgb = lambda img, s: _act(stylegan2.EqualizedConv(self.widths[s], 1, name=f"b{4 << s}_fromrgb")(img))
    # Every earlier phase's fromRGB exists in every later phase (see the generator).
    inputs = [images]
    for _ in range(stage):
      inputs.append(downsample2(inputs[-1]))
    entries = {s: from_rgb(inputs[stage - s], s) for s in range(stage + 1)}
    x = entries[stage]
    for s in range(stage, 0, -1):
      for j in range(2):
        x = _act(stylegan2.EqualizedConv(self.widths[s] if j == 0 else self.widths[s - 1], 3,
                                         name=f"b{4 << s}_conv{j}")(x))
      x = downsample2(x)
      if s == stage:  # the fading-in block blends with the next-coarser input path
        x = entries[stage - 1] + alpha * (x - entries[stage - 1])
    x = stylegan2.minibatch_stddev(x)
    x = _act(stylegan2.EqualizedConv(self.widths[0], 3, name="b4_conv")(x))
    features = _act(stylegan2.EqualizedDense(self.widths[0], name="b4_dense")(x.reshape(x.shape[0], -1)))
    logits = stylegan2.EqualizedDense(1, name="out")(features)[:, 0]
    if self.num_classes:
      embedding = stylegan2.EqualizedDense(self.widths[0], name="class_embed")(jax.nn.one_hot(labels, self.num_classes))
      logits = logits + jnp.sum(embedding * features, axis=-1) / jnp.sqrt(float(self.widths[0]))
    return logits


def drift_penalty(real_logits: jax.Array, weight: float = 1e-3) -> jax.Array:
  """The epsilon drift term of ProGAN's WGAN-GP loss: weight * E[D(real)^2], keeping the critic near zero."""
  return weight * jnp.mean(jnp.square(real_logits))


def fade_alpha(images_shown: jax.Array, fade_images: int) -> jax.Array:
  """The fade-in coefficient: linear from 0 to 1 over `fade_images` images of a phase, then 1."""
  return jnp.clip(images_shown / fade_images, 0.0, 1.0)
