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

from gan_jax.kernels import canonical_conv

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
    # The lazy R1 penalty differentiates this layer twice inside a lax.cond branch: canonical_conv keeps
    # those gradient convolutions library calls on XLA:CPU.
    y = canonical_conv.conv(x, weight / math.sqrt(k * k * c))
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
  # Written as StyleGAN2's non-fused form: scaling the input channels by the style and the output
  # channels by the demodulation factor equals convolving with each sample's own kernel, with one
  # shared-weight convolution (no per-sample grouped convolution, which the SPMD partitioner could not
  # split over a sharded batch).
  y = jax.lax.conv_general_dilated(x * styles[:, None, None, :].astype(x.dtype), weight, (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if demodulate:
    # ||w_b[..., o]||^2 = sum_i s_bi^2 sum_kk w[k, k, i, o]^2.
    norms = jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1))
    y = y * jax.lax.rsqrt(norms + eps)[:, None, None, :].astype(y.dtype)
  return y


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


class ModulatedConv(nn.Module):
  """A 3x3 (or 1x1) modulated convolution: the style comes from w through an affine layer (bias 1)."""
  features: int
  kernel_size: int = 3
  demodulate: bool = True

  @nn.compact
  def __call__(self, x, w):
    c = x.shape[-1]
    styles = EqualizedDense(c, bias_init=1.0, name="affine")(w)
    weight = self.param("kernel", nn.initializers.normal(1.0), (self.kernel_size, self.kernel_size, c, self.features))
    y = modulated_conv2d(x, weight / math.sqrt(self.kernel_size**2 * c), styles, self.demodulate)
    return y + self.param("bias", nn.initializers.zeros, (self.features,))


class StyleLayer(nn.Module):
  """Modulated 3x3 convolution, per-pixel noise with a learned strength, bias, leaky ReLU (gain sqrt 2)."""
  features: int

  @nn.compact
  def __call__(self, x, w, noise):
    y = ModulatedConv(self.features)(x, w)
    y = y + self.param("noise_strength", nn.initializers.zeros, ()) * noise
    return nn.leaky_relu(y, LEAKY_SLOPE) * math.sqrt(2.0)


class SynthesisNetwork(nn.Module):
  """The skip-connection generator: a learned 4x4 constant, two style layers per resolution, a toRGB per resolution
  whose outputs are up-sampled and summed.

  Call with per-layer styles ws [B, num_ws, w_dim] (`num_ws`) and a key for the noise inputs.
  """
  image_size: int = 32
  channels: int = 3
  widths: Sequence[int] = (256, 256, 256, 256)  # one per resolution 4, 8, ..., image_size

  @property
  def num_ws(self) -> int:
    return 2 * len(self.widths)

  @nn.compact
  def __call__(self, ws, key):
    sizes = resolutions(self.image_size)
    if len(sizes) != len(self.widths):
      raise ValueError(f"{len(sizes)} resolutions {tuple(sizes)} need as many widths, got {tuple(self.widths)}")
    b = ws.shape[0]
    x = jnp.broadcast_to(self.param("const", nn.initializers.normal(1.0), (4, 4, self.widths[0]))[None],
                         (b, 4, 4, self.widths[0]))
    noises = _noise_inputs(key, b, sizes)
    image, layer = None, 0
    for i, (size, width) in enumerate(zip(sizes, self.widths)):
      if i:
        x = jax.image.resize(x, (b, size, size, x.shape[-1]), "bilinear")
      for j in range(2):
        x = StyleLayer(width, name=f"b{size}_conv{j}")(x, ws[:, layer], noises[2 * i + j])
        layer += 1
      rgb = ModulatedConv(self.channels, kernel_size=1, demodulate=False, name=f"b{size}_torgb")(x, ws[:, layer - 1])
      image = rgb if image is None else jax.image.resize(image, (b, size, size, self.channels), "bilinear") + rgb
    return image


def _noise_inputs(key: jax.Array, batch: int, sizes: Sequence[int]) -> list[jax.Array]:
  """Per-pixel N(0, 1) noise [batch, s, s, 1] for the two style layers of each resolution s.

  One draw, cut into the maps: XLA:CPU compiled one small draw per layer ~20x slower than this.
  """
  shapes = [(batch, size, size, 1) for size in sizes for _ in range(2)]
  counts = [math.prod(shape) for shape in shapes]
  flat = jax.random.normal(key, (sum(counts),))
  offsets = [sum(counts[:i]) for i in range(len(counts))]
  return [flat[o:o + n].reshape(shape) for o, n, shape in zip(offsets, counts, shapes)]


def minibatch_stddev(x: jax.Array, group_size: int = 4) -> jax.Array:
  """Appends one feature map: the standard deviation over groups of samples, averaged over features and pixels.

  Groups are runs of consecutive samples, so a discriminator pass over [reals; fakes] (the GAN
  step's single pass) never mixes the two in a group when each half is a multiple of the group
  size, and a group never spans two devices of a sharded batch.
  """
  b, h, w, c = x.shape
  g = min(group_size, b)
  if b % g:
    raise ValueError(f"batch {b} is not divisible by the minibatch-stddev group size {g}")
  y = x.reshape(b // g, g, h, w, c)
  std = jnp.sqrt(jnp.var(y, axis=1) + 1e-8).mean(axis=(1, 2, 3))  # [b // g]
  feature = jnp.broadcast_to(std[:, None, None, None, None], (b // g, g, h, w, 1)).reshape(b, h, w, 1)
  return jnp.concatenate([x, feature], axis=-1)


class ResidualDiscriminator(nn.Module):
  """StyleGAN2's residual discriminator with a minibatch-stddev layer; conditional by projection.

  Returns logits [B] (projection: + <embed(label), features> when `num_classes` > 0).
  """
  image_size: int = 32
  widths: Sequence[int] = (256, 256, 256, 256)  # one per resolution image_size, ..., 8, then 4x4
  num_classes: int = 0

  @nn.compact
  def __call__(self, images, labels=None):
    sizes = list(reversed(resolutions(self.image_size)))
    x = nn.leaky_relu(EqualizedConv(self.widths[0], 1)(images), LEAKY_SLOPE)
    for size, width, next_width in zip(sizes[:-1], self.widths, list(self.widths[1:]) + [self.widths[-1]]):
      skip = EqualizedConv(next_width, 1, use_bias=False)(jax.image.resize(
          x, (x.shape[0], size // 2, size // 2, x.shape[-1]), "bilinear"))
      h = nn.leaky_relu(EqualizedConv(width, 3)(x), LEAKY_SLOPE)
      h = nn.leaky_relu(EqualizedConv(next_width, 3)(h), LEAKY_SLOPE)
      h = jax.image.resize(h, (h.shape[0], size // 2, size // 2, h.shape[-1]), "bilinear")
      x = (skip + h) / math.sqrt(2.0)
    x = minibatch_stddev(x)
    x = nn.leaky_relu(EqualizedConv(self.widths[-1], 3)(x), LEAKY_SLOPE)
    features = nn.leaky_relu(EqualizedDense(self.widths[-1])(x.reshape(x.shape[0], -1)), LEAKY_SLOPE)
    logits = EqualizedDense(1)(features)[:, 0]
    if self.num_classes:
      embedding = EqualizedDense(self.widths[-1], name="class_embed")(jax.nn.one_hot(labels, self.num_classes))
      logits = logits + jnp.sum(embedding * features, axis=-1) / math.sqrt(self.widths[-1])
    return logits
