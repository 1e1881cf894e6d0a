"""Image-to-image translation networks: pix2pix's U-Net, CycleGAN's ResNet generator, the PatchGAN.

Layouts follow the papers' appendices (Isola et al., CVPR 2017, section 6.1.1;
Zhu et al., ICCV 2017, section 7.2), written with NHWC Flax layers:

* `UNetGenerator`: encoder C64-C128-C256-C512-C512... (4x4 stride-2 convolutions,
  LeakyReLU 0.2, no normalisation on the first and the innermost layer) down to 1x1,
  decoder of 4x4 stride-2 transposed convolutions whose outputs are concatenated with
  the mirrored encoder layer; dropout 0.5 in the first decoder blocks is the noise source.
* `ResnetGenerator`: c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-C with reflection
  padding; n = 6 up to 128 px and 9 from 256 px, as in the paper (section 7.2).
* `PatchDiscriminator`: C64-C128-C256-C512 (the last stride 1) and a 1-channel
  convolution; each output judges one patch of the input. The patch side (the
  receptive field) is computed from the layers by `patch_receptive_field`; 3 stride-2
  layers give the paper's 70x70 at 256 px, 1 gives 16x16 for 28-32 px images.

Normalisation is instance normalisation without affine parameters (CycleGAN's
reference setting; pix2pix's batch normalisation at batch size 1 computes the same
thing), so no running statistics exist and a data-parallel step computes what a
single-device step computes. Convolutions followed by it carry no bias: the mean
subtraction cancels a bias, whose zero gradient Adam would turn into noise of size lr. Weights start from N(0, 0.02) as in both references.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.kernels import downsample
from gan_jax.kernels import upsample

_INIT = nn.initializers.normal(0.02)
_PAD1 = ((1, 1), (1, 1))
# (kernel, stride) of the PatchGAN's layers after the stride-2 ones: a stride-1 C(8w) and the output layer.
_PATCH_TAIL = ((4, 1), (4, 1))
NORMS = ("instance", "none")


def _norm(kind: str):
  if kind == "instance":
    return nn.InstanceNorm(use_scale=False, use_bias=False, epsilon=1e-5)
  return lambda x: x


def _bias(norm: str, normalised: bool) -> bool:
  """A bias before a normalisation that subtracts the mean would get zero gradient: leave it out."""
  return norm == "none" or not normalised


def _reflect(x: jax.Array, pad: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _stride2_conv(x: jax.Array, features: int, kernel: int, use_bias: bool, name: str) -> jax.Array:
  """A stride-2 convolution padded by 1 on each side, with `flax.linen.Conv`'s parameters.

  Where that padding is 'SAME' (a 4x4 kernel on even sides) it runs as `downsample.StridedConv`,
  as the DCGAN discriminators do: the phase-decomposed input gradient for outputs of 7 px and more
  (on every backend), and on CPU one matmul on tiny grids (XLA:CPU's own forms were the larger part
  of a pix2pix step; on GPU only the DCGAN layers were measured); elsewhere as `nn.Conv`.
  """
  if kernel == 4 and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:
    return downsample.StridedConv(features, kernel, 2, use_bias=use_bias, kernel_init=_INIT, name=name)(x)
  return nn.Conv(features, (kernel, kernel), strides=(2, 2), padding=_PAD1, use_bias=use_bias, kernel_init=_INIT,
                 name=name)(x)


def _up_conv(x: jax.Array, features: int, kernel: int, use_bias: bool, name: str) -> jax.Array:
  """`flax.linen.ConvTranspose(features, (k, k), strides=(2, 2), padding='SAME')`, in `upsample.UpConv`'s fastest form."""
  return upsample.UpConv(features, kernel, 2, use_bias=use_bias, kernel_init=_INIT, name=name)(x)


def unet_depth(side: int) -> int:
  """Stride-2 layers that take a `side`-pixel image down to 1x1 (side must be a power of two >= 4)."""
  if side < 4 or side & (side - 1):
    raise ValueError(f"The U-Net generator needs a square image whose side is a power of two >= 4 (e.g. 32, 64, "
                     f"128, 256), got {side}; set config.image_size")
  return int(math.log2(side))


def resnet_blocks(side: int) -> int:
  """CycleGAN's residual blocks: 6 for 128 px (and smaller) images, 9 from 256 px."""
  return 9 if side >= 256 else 6


def check_resnet_size(side: int) -> None:
  if side < 8 or side % 4:
    raise ValueError(f"The ResNet generator needs a side divisible by 4 and >= 8 (two stride-2 layers), got {side}; "
                     "set config.image_size")


class UNetGenerator(nn.Module):
  """pix2pix's U-Net generator; output in [-1, 1] (tanh), same size as the input.

  Attributes:
    out_channels: channels of the translated image.
    width: channels of the first layer (64 in the paper); later layers double up to 8 * width.
    dropout_blocks: decoder blocks (from the innermost) with dropout 0.5, the generator's
      noise source; capped at depth - 1.
    norm: 'instance' or 'none'.
  """
  out_channels: int
  width: int = 64
  dropout_blocks: int = 3
  norm: str = "instance"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.shape[1] != x.shape[2]:
      raise ValueError(f"The U-Net generator needs square images, got {x.shape[1]}x{x.shape[2]}")
    depth = unet_depth(x.shape[1])
    widths = [self.width * min(2 ** i, 8) for i in range(depth)]
    skips = []
    h = x
    for i, w in enumerate(widths):
      if i:
        h = nn.leaky_relu(h, 0.2)
      normed = 0 < i < depth - 1  # neither the outermost layer nor the 1x1 bottleneck is normalised
      h = _stride2_conv(h, w, 4, _bias(self.norm, normed), f"down{i}")
      if normed:
        h = _norm(self.norm)(h)
      skips.append(h)
    for block, i in enumerate(reversed(range(depth))):
      h = nn.relu(h if i == depth - 1 else jnp.concatenate([h, skips[i]], axis=-1))
      out = self.out_channels if i == 0 else widths[i - 1]
      h = _up_conv(h, out, 4, _bias(self.norm, i > 0), f"up{i}")
      if i == 0:
        return jnp.tanh(h)
      h = _norm(self.norm)(h)
      if block < min(self.dropout_blocks, depth - 1):
        h = nn.Dropout(0.5, deterministic=not train)(h)
    raise AssertionError("unreachable")


class ResidualBlock(nn.Module):
  """Two reflection-padded 3x3 convolutions with instance normalisation, added to the input."""
  norm: str = "instance"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    bias = _bias(self.norm, True)
    h = nn.Conv(channels, (3, 3), padding="VALID", use_bias=bias, kernel_init=_INIT)(_reflect(x, 1))
    h = nn.relu(_norm(self.norm)(h))
    h = nn.Conv(channels, (3, 3), padding="VALID", use_bias=bias, kernel_init=_INIT)(_reflect(h, 1))
    return x + _norm(self.norm)(h)


class ResnetGenerator(nn.Module):
  """CycleGAN's generator; output in [-1, 1] (tanh), same size as the input.

  Attributes:
    out_channels: channels of the translated image.
    width: channels of the first layer (64 in the paper).
    num_blocks: residual blocks; 0 chooses the paper's 6 (up to 128 px) or 9 (from 256 px).
    norm: 'instance' or 'none'.
  """
  out_channels: int
  width: int = 64
  num_blocks: int = 0
  norm: str = "instance"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or running statistics
    check_resnet_size(min(x.shape[1], x.shape[2]))
    bias = _bias(self.norm, True)
    conv = lambda w, k, s, p, name, bias=bias: nn.Conv(w, (k, k), strides=(s, s), padding=p, use_bias=bias,
                                                       kernel_init=_INIT, name=name)
    h = nn.relu(_norm(self.norm)(conv(self.width, 7, 1, "VALID", "c7s1_in")(_reflect(x, 3))))
    for i, w in enumerate((2 * self.width, 4 * self.width)):
      h = nn.relu(_norm(self.norm)(conv(w, 3, 2, _PAD1, f"down{i}")(h)))
    for i in range(self.num_blocks or resnet_blocks(x.shape[1])):
      h = ResidualBlock(self.norm, name=f"res{i}")(h)
    for i, w in enumerate((2 * self.width, self.width)):
      h = _up_conv(h, w, 3, bias, f"up{i}")
      h = nn.relu(_norm(self.norm)(h))
    return jnp.tanh(conv(self.out_channels, 7, 1, "VALID", "c7s1_out", True)(_reflect(h, 3)))


def patch_layers(num_layers: int) -> tuple[tuple[int, int], ...]:
  """(kernel, stride) of every convolution of a PatchGAN with `num_layers` stride-2 layers."""
  return ((4, 2),) * num_layers + _PATCH_TAIL


def patch_receptive_field(num_layers: int) -> int:
  """Side of the input patch one PatchGAN output sees: r <- (r - 1) * stride + kernel, output to input."""
  field = 1
  for kernel, stride in reversed(patch_layers(num_layers)):
    field = (field - 1) * stride + kernel
  return field


PATCH_SIZES = {patch_receptive_field(n): n for n in range(1, 6)}  # {16: 1, 34: 2, 70: 3, 142: 4, 286: 5}


def patch_num_layers(patch_size: int) -> int:
  """The stride-2 layers whose receptive field is `patch_size` (one of PATCH_SIZES)."""
  if patch_size not in PATCH_SIZES:
    raise ValueError(f"Unknown patch_size {patch_size}; choose one of: {', '.join(map(str, PATCH_SIZES))}")
  return PATCH_SIZES[patch_size]


class PatchDiscriminator(nn.Module):
  """The PatchGAN: a grid of logits, one per overlapping `patch_receptive_field(num_layers)` patch.

  Attributes:
    width: channels of the first layer (64 in the papers); later layers double up to 8 * width.
    num_layers: stride-2 layers (3 for the 70x70 PatchGAN).
    norm: 'instance' or 'none' (the first layer is never normalised).
  """
  width: int = 64
  num_layers: int = 3
  norm: str = "instance"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    layers: Sequence[tuple[int, int]] = patch_layers(self.num_layers)
    h = x
    for i, (kernel, stride) in enumerate(layers[:-1]):
      features, bias = self.width * min(2 ** i, 8), _bias(self.norm, i > 0)
      if stride == 2:
        h = _stride2_conv(h, features, kernel, bias, f"conv{i}")
      else:
        h = nn.Conv(features, (kernel, kernel), padding=_PAD1, use_bias=bias, kernel_init=_INIT, name=f"conv{i}")(h)
      if i:
        h = _norm(self.norm)(h)
      h = nn.leaky_relu(h, 0.2)
    kernel, stride = layers[-1]
    return nn.Conv(1, (kernel, kernel), strides=(stride, stride), padding=_PAD1, kernel_init=_INIT,
                   name="logits")(h)
