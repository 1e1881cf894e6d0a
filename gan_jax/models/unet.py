"""The denoiser of latent diffusion, class-conditioned through cross-attention (Rombach et al., CVPR 2022).

A U-Net of ResNet blocks with skip connections between the down- and up-sampling
paths, the timestep as a sinusoidal embedding added inside every block,
self-attention at the lowest resolution, and cross-attention from the image
tokens to a sequence of condition tokens. Stable Diffusion's condition tokens
come from a frozen text encoder; here they are a learned embedding per class
plus a null token for classifier-free guidance, so a text encoder can take
their place without touching the U-Net. Odd sizes (a 7x7 latent) work: each
up-sampling resizes to its skip connection's shape.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding [B, dim] of integer timesteps t [B]: cos(t f_i) then sin(t f_i), f_i = max_period^(-i/half)."""
  if dim % 2:
    raise ValueError(f"the timestep embedding needs an even dim, got {dim}")
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """Multi-head scaled dot-product attention: q [B, N, H, D], k and v [B, M, H, D] -> [B, N, H, D]."""
  weights = jax.nn.softmax(jnp.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(q.shape[-1]), axis=-1)
  return jnp.einsum("bhnm,bmhd->bnhd", weights, v)


def norm_groups(channels: int) -> int:
  """GroupNorm's group count: the largest of 32, 16, 8, ... that divides `channels` with >= 4 channels per group.

  One channel per group would be instance norm, which removes the per-channel timestep offset
  the ResNet blocks add before their second normalisation.
  """
  groups = 32
  while groups > 1 and (channels % groups or channels // groups < 4):
    groups //= 2
  return groups


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv twice, the timestep embedding added in between, a 1x1 skip when widths differ."""
  features: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, temb, train: bool = False):
    h = nn.Conv(self.features, (3, 3))(nn.silu(nn.GroupNorm(norm_groups(x.shape[-1]))(x)))
    h = h + nn.Dense(self.features)(nn.silu(temb))[:, None, None, :]
    h = nn.silu(nn.GroupNorm(norm_groups(self.features))(h))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(h)  # each block starts as identity
    skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1))(x)
    return skip + h


class CrossAttention(nn.Module):
  """x + out(attention(q(norm x), k(context), v(context))) over the H*W image tokens.

  With `context` None it attends to the image's own tokens (self-attention).
  """
  heads: int = 4

  @nn.compact
  def __call__(self, x, context=None):
    b, h, w, c = x.shape
    if c % self.heads:
      raise ValueError(f"{c} channels do not split into {self.heads} attention heads")
    tokens = nn.LayerNorm()(x.reshape(b, h * w, c))
    context = tokens if context is None else context
    split = lambda y: y.reshape(y.shape[0], y.shape[1], self.heads, c // self.heads)
    q = split(nn.Dense(c, use_bias=False, name="query")(tokens))
    k = split(nn.Dense(c, use_bias=False, name="key")(context))
    v = split(nn.Dense(c, use_bias=False, name="value")(context))
    out = nn.Dense(c, name="out")(attention(q, k, v).reshape(b, h * w, c))
    return x + out.reshape(b, h, w, c)


class ClassTokens(nn.Module):
  """Condition tokens of a class label: `num_tokens` learned vectors per class; label `num_classes` is the null token."""
  num_classes: int
  dim: int
  num_tokens: int = 1

  @nn.compact
  def __call__(self, labels):
    table = nn.Embed(self.num_classes + 1, self.num_tokens * self.dim, name="embedding")
    return table(labels).reshape(labels.shape[0], self.num_tokens, self.dim)


class UNet(nn.Module):
  """Predicts the noise (or v) of x_t [B, H, W, C] at timesteps t [B], given condition tokens [B, M, context_dim].

  Attributes:
    out_channels: channels of the prediction (the input's).
    widths: channels of each resolution level; each level after the first halves the size.
    blocks_per_level: ResNet blocks per level on the way down (one more on the way up).
    heads: attention heads.
    cross_attention_levels: levels (0 = full size) whose blocks attend to the condition tokens; the
      middle always does.
    dropout_rate: dropout inside the ResNet blocks.
  """
  out_channels: int
  widths: Sequence[int] = (64, 128)
  blocks_per_level: int = 1
  heads: int = 4
  cross_attention_levels: Sequence[int] = (1,)
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, t, context=None, train: bool = False):
    temb_dim = 4 * self.widths[0]
    temb = nn.Dense(temb_dim)(nn.silu(nn.Dense(temb_dim)(timestep_embedding(t, self.widths[0]))))
    block = lambda features, h: ResBlock(features, self.dropout_rate)(h, temb, train)
    attend = lambda level, h: (CrossAttention(self.heads)(h, context)
                               if context is not None and level in self.cross_attention_levels else h)
    h = nn.Conv(self.widths[0], (3, 3))(x)
    skips = [h]
    for level, width in enumerate(self.widths):
      if level:
        h = nn.Conv(width, (3, 3), strides=(2, 2))(h)
        skips.append(h)
      for _ in range(self.blocks_per_level):
        h = attend(level, block(width, h))
        skips.append(h)
    h = block(self.widths[-1], h)
    h = CrossAttention(self.heads)(h)  # self-attention at the lowest resolution
    if context is not None:
      h = CrossAttention(self.heads)(h, context)
    h = block(self.widths[-1], h)
    for level in reversed(range(len(self.widths))):
      for _ in range(self.blocks_per_level + 1):
        h = attend(level, block(self.widths[level], jnp.concatenate([h, skips.pop()], axis=-1)))
      if level:
        target = skips[-1].shape
        h = jax.image.resize(h, (h.shape[0], target[1], target[2], h.shape[-1]), "nearest")
        h = nn.Conv(self.widths[level - 1], (3, 3))(h)
    h = nn.silu(nn.GroupNorm(norm_groups(h.shape[-1]))(h))
    return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)


class ConditionalDenoiser(nn.Module):
  """The U-Net with its class tokens: (x_t, t, labels) -> prediction; label `num_classes` means unconditional."""
  num_classes: int
  out_channels: int
  widths: Sequence[int] = (64, 128)
  blocks_per_level: int = 1
  heads: int = 4
  context_dim: int = 64
  cross_attention_levels: Sequence[int] = (1,)
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, t, labels, train: bool = False):
    context = ClassTokens(self.num_classes, self.context_dim, name="class_tokens")(labels)
    return UNet(self.out_channels, self.widths, self.blocks_per_level, self.heads, self.cross_attention_levels,
                self.dropout_rate, name="unet")(x, t, context, train)
