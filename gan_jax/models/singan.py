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

`conv_impl` picks how the 3x3 convolutions are computed; parameters (a (3, 3, in,
out) 'kernel' and a 'bias', as `flax.linen.Conv`) do not depend on it:
  * 'xla': `lax.conv_general_dilated`, best on GPU/TPU.
  * 'im2col': one matrix product over the 9 shifted copies of the input. XLA:CPU
    runs the weight-gradient convolution ~30x slower inside a loop body (such as
    the training `lax.scan`) than outside it (measured here; cf. jax-ml/jax#12868
    for convolutions in loops on CPU); as matrix products every pass is fast in
    and out of loops (3x faster than 'xla' even unrolled, for SinGAN's critic).
  * 'auto' (resolved by `resolve_conv_impl`): 'im2col' on CPU, 'xla' elsewhere.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# SinGAN initialises every convolution with N(0, 0.02).
_KERNEL_INIT = nn.initializers.normal(0.02)
_LEAK = 0.2
CONV_IMPLS = ("auto", "xla", "im2col")


def resolve_conv_impl(impl: str, backend: str) -> str:
  """'auto' -> 'im2col' on the CPU backend, 'xla' on others; other names are checked and kept."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl '{impl}'; choose one of: {', '.join(CONV_IMPLS)}")
  if impl == "auto":
    return "im2col" if backend == "cpu" else "xla"
  return impl


def im2col_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'VALID', stride-1 convolution of [N, H, W, C] by a (kh, kw, C, O) kernel as one matrix product."""
  kh, kw, channels, out = kernel.shape
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  # Tap-major, channel-minor, matching the row order of the reshaped kernel.
  patches = jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=-1)
  return patches @ kernel.reshape(kh * kw * channels, out)


def features_at_scale(scale: int, base: int = 32, maximum: int = 128, double_every: int = 4) -> int:
  """Filters of the networks at pyramid scale `scale` (0 = coarsest): 32, doubling every 4 scales, at most 128."""
  return min(base * 2 ** (scale // double_every), maximum)


class Conv3x3(nn.Module):
  """3x3 'VALID' convolution with bias; the parameters of `flax.linen.Conv`, computed by `impl`."""
  features: int
  impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", _KERNEL_INIT, (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    if self.impl == "im2col":
      y = im2col_conv(x, kernel)
    elif self.impl == "xla":
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      raise ValueError(f"Conv3x3 impl must be 'xla' or 'im2col' (resolve 'auto' first), got '{self.impl}'")
    return y + bias


class ConvBlock(nn.Module):
  """3x3 'VALID' conv, optional BatchNorm, LeakyReLU(0.2)."""
  features: int
  norm: bool = True
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = Conv3x3(self.features, self.conv_impl)(x)
    if self.norm:
      # momentum 0.9 here is PyTorch's BatchNorm momentum 0.1.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
    return nn.leaky_relu(x, _LEAK)


class SinGenerator(nn.Module):
  """Residual generator of one scale: G(noisy, prev) = tanh(body(pad(noisy))) + prev.

  Attributes:
    features: filters of every hidden block.
    num_blocks: conv layers (the last is conv + tanh); the receptive field is 2 * num_blocks + 1.
    conv_impl: 'xla' or 'im2col' (see the module docstring).
  """
  features: int = 32
  num_blocks: int = 5
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, noisy: jax.Array, prev: jax.Array, train: bool = False) -> jax.Array:
    """Maps [N, H, W, C] noise-plus-upsampled-image and [N, H, W, C] upsampled image to [N, H, W, C]."""
    pad = self.num_blocks
    x = jnp.pad(noisy, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for i in range(self.num_blocks - 1):
      x = ConvBlock(self.features, norm=True, conv_impl=self.conv_impl, name=f"block{i}")(x, train)
    x = Conv3x3(prev.shape[-1], self.conv_impl, name="tail")(x)
    return jnp.tanh(x) + prev


class PatchCritic(nn.Module):
  """Markovian critic: [N, H, W, C] -> [N, H - 2 * num_blocks, W - 2 * num_blocks, 1] patch scores."""
  features: int = 32
  num_blocks: int = 5
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_blocks - 1):
      x = ConvBlock(self.features, norm=False, conv_impl=self.conv_impl, name=f"block{i}")(x)
    return Conv3x3(1, self.conv_impl, name="tail")(x)
