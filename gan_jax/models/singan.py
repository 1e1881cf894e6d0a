"""The per-scale networks of SinGAN (Shaham et al., "SinGAN: Learning a Generative
Model from a Single Natural Image", ICCV 2019).

Both networks are five 3x3 convolutions with 'VALID' padding, so each trims one
pixel per side per layer. As in the official SinGAN code, the generator zero-pads
its *input image* by `num_blocks` pixels instead of padding every feature map, so
its output has exactly the input's size for any input size (fully convolutional).
The critic is not padded: it maps an HxW image to an (H-10)x(W-10) map of
scores, one per 11x11 patch (a Markovian / PatchGAN critic).

Choices that differ from the official code:
  * The critic has no BatchNorm: WGAN-GP penalises the input gradient of each
    example, which is only that example's gradient when examples do not share
    batch statistics (and SinGAN trains on a batch of one anyway).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# SinGAN initialises every convolution with N(0, 0.02).
_KERNEL_INIT = nn.initializers.normal(0.02)
_LEAK = 0.2


def features_at_scale(scale: int, base: int = 32, maximum: int = 128, double_every: int = 4) -> int:
  """Filters of the networks at pyramid scale `scale` (0 = coarsest): 32, doubling every 4 scales, at most 128."""
  return min(base * 2 ** (scale // double_every), maximum)


class ConvBlock(nn.Module):
  """3x3 'VALID' conv, optional BatchNorm, LeakyReLU(0.2)."""
  features: int
  norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding="VALID", kernel_init=_KERNEL_INIT)(x)
    if self.norm:
      # momentum 0.9 here is PyTorch's BatchNorm momentum 0.1.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.leaky_relu(x, _LEAK)


class SinGenerator(nn.Module):
  """Residual generator of one scale: G(noisy, prev) = tanh(body(pad(noisy))) + prev.

  Attributes:
    features: filters of every hidden block.
    num_blocks: conv layers (the last is conv + tanh); the receptive field is 2 * num_blocks + 1.
  """
  features: int = 32
  num_blocks: int = 5

  @nn.compact
  def __call__(self, noisy: jax.Array, prev: jax.Array, train: bool = False) -> jax.Array:
    """Maps [N, H, W, C] noise-plus-upsampled-image and [N, H, W, C] upsampled image to [N, H, W, C]."""
    pad = self.num_blocks
    x = jnp.pad(noisy, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for i in range(self.num_blocks - 1):
      x = ConvBlock(self.features, norm=True, name=f"block{i}")(x, train)
    x = nn.Conv(prev.shape[-1], (3, 3), padding="VALID", kernel_init=_KERNEL_INIT, name="tail")(x)
    return jnp.tanh(x) + prev


class PatchCritic(nn.Module):
  """Markovian critic: [N, H, W, C] -> [N, H - 2 * num_blocks, W - 2 * num_blocks, 1] patch scores."""
  features: int = 32
  num_blocks: int = 5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_blocks - 1):
      x = ConvBlock(self.features, norm=False, name=f"block{i}")(x)
    return nn.Conv(1, (3, 3), padding="VALID", kernel_init=_KERNEL_INIT, name="tail")(x)
