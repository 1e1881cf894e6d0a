"""StyleGAN2's building blocks (Karras et al., CVPR 2020): equalised learning rate, the mapping network,
modulated/demodulated convolution, truncation and style mixing.

Equalised learning rate (ProGAN, Karras et al., ICLR 2018): weights are stored as N(0, 1/lr_mul) and
scaled at run time by lr_mul / sqrt(fan_in), so Adam's per-parameter step sizes act equally on every
layer; `lr_multiplier` 0.01 slows the mapping network as the paper does.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2


class EqualizedDense(nn.Module):
  """y = x @ (W * lr_mul / sqrt(fan_in)) + b * lr_mul, with W stored ~ N(0, 1 / lr_mul^2)."""
  features: int
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    weight = self.param("kernel", nn.initializers.normal(1.0 / self.lr_multiplier), (fan_in, self.features))
    bias = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_multiplier), (self.features,))
    return x @ (weight * (self.lr_multiplier / math.sqrt(fan_in))) + bias * self.lr_multiplier


class EqualizedConv(nn.Module):
  """A stride-1 'SAME' convolution whose N(0, 1) kernel is scaled by 1 / sqrt(fan_in) at run time."""
  features: int
  kernel_size: int = 3
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    k, c = self.kernel_size, x.shape[-1]
    weight = self.param("kernel", nn.initializers.normal(1.0), (k, k, c, self.features))
    y = jax.lax.conv_general_dilated(x, weight / math.sqrt(k * k * c), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, demodulate: bool = True,
                     eps: float = 1e-8) -> jax.Array:
  """StyleGAN2's convolution: each sample's kernel scaled per input channel by its style, then demodulated.

  Args:
    x: [B, H, W, C_in].
    weight: [k, k, C_in, C_out] (already scaled to its effective value).
    styles: [B, C_in].
    demodulate: divide each sample's output channel by the norm of its kernel, so unit-variance
      inputs give unit-variance outputs (the paper's eq. 3).
    eps: keeps the division finite.

  Returns:
    [B, H, W, C_out], 'SAME' padding, stride 1.
  """
  kernels = weight[None] * styles[:, None, None, :, None]  # [B, k, k, C_in, C_out]
  if demodulate:
    kernels = kernels * jax.lax.rsqrt(jnp.sum(jnp.square(kernels), axis=(1, 2, 3), keepdims=True) + eps)
  # One grouped convolution: the batch folded into the channels, one group per sample.
  b, h, w, c = x.shape
  grouped = jnp.transpose(kernels, (1, 2, 3, 0, 4)).reshape(kernels.shape[1], kernels.shape[2], c, b * weight.shape[-1])
  folded = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, w, b * c)
  y = jax.lax.conv_general_dilated(folded, grouped, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=b)
  return jnp.transpose(y.reshape(h, w, b, weight.shape[-1]), (2, 0, 1, 3))


def normalize_2nd_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


class MappingNetwork(nn.Module):
  """z (and a class) -> w: normalised z, concatenated with a normalised label embedding, through MLP layers.

  Conditioning as in StyleGAN2-ADA: the embedding of the label joins z before the layers.
  """
  w_dim: int = 256
  num_layers: int = 4
  num_classes: int = 0
  lr_multiplier: float = 0.01

  @nn.compact
  def __call__(self, z, labels=None):
    x = normalize_2nd_moment(z)
    if self.num_classes:
      embedding = EqualizedDense(self.w_dim, name="embed")(jax.nn.one_hot(labels, self.num_classes))
      x = jnp.concatenate([x, normalize_2nd_moment(embedding)], axis=-1)
    for i in range(self.num_layers):
      x = nn.leaky_relu(EqualizedDense(self.w_dim, self.lr_multiplier, name=f"fc{i}")(x), LEAKY_SLOPE)
    return x


def truncate(w: jax.Array, w_avg: jax.Array, psi: float) -> jax.Array:
  """The truncation trick: w_avg + psi (w - w_avg); psi = 1 leaves w, psi = 0 gives the average for every z."""
  return w_avg + psi * (w - w_avg)


def mix_styles(w1: jax.Array, w2: jax.Array, num_layers: int, crossover: jax.Array) -> jax.Array:
  """Per-layer styles [B, num_layers, w_dim]: w1 for layers below `crossover` [B], w2 from it on."""
  layers = jnp.arange(num_layers)[None, :, None]
  return jnp.where(layers < crossover[:, None, None], w1[:, None, :], w2[:, None, :])


def broadcast_styles(w: jax.Array, num_layers: int) -> jax.Array:
  return jnp.broadcast_to(w[:, None, :], (w.shape[0], num_layers, w.shape[-1]))


def update_w_avg(w_avg: jax.Array, w: jax.Array, decay: float = 0.995) -> jax.Array:
  """The running mean of w that truncation pulls towards (tracked during training)."""
  return decay * w_avg + (1.0 - decay) * jnp.mean(w, axis=0)


def resolutions(size: int, start: int = 4) -> Sequence[int]:
  """4, 8, ..., size (size a power of two times 4)."""
  out = [start]
  while out[-1] < size:
    out.append(out[-1] * 2)
  if out[-1] != size:
    raise ValueError(f"image size {size} is not {start} times a power of two")
  return out
