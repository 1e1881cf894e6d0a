"""Strided 'SAME' convolutions whose input gradient avoids XLA's zero-dilated form.

The gradient of a stride-s convolution with respect to its input is a transposed
convolution. XLA lowers it, like `flax.linen.ConvTranspose`, to a convolution over
the zero-dilated output gradient, which XLA:CPU runs slowly (the stride-2 5x5
14x14x64 -> 7x7x128 discriminator layer of DCGAN-MNIST: ~35 ms of input gradient
against ~7 ms forward, batch 128; benchmarks/layer_benchmark.py). `strided_conv`
computes the same forward pass and weight gradient as `lax.conv_general_dilated`,
and the input gradient by phase decomposition, as `upsample.conv_transpose_subpixel`
does for transposed convolutions: input pixel s*a + r only receives gradient through
the kernel taps t with (t - r - pad_lo) divisible by s, so each of the s*s input
phases is a stride-1 correlation of the output gradient; all phases are packed into
one convolution with s*s*C_in channels, followed by depth-to-space and a crop.

The packed gradient convolution runs on the output's spatial grid, and XLA:CPU is slow
on convolutions over tiny grids (see `upsample`), so `conv_same` uses it only for
outputs of at least AUTO_PHASE_MIN_OUTPUT_SIDE pixels a side. On the tiniest grids
(4x4 -> 2x2) it runs the layer as one matmul on CPU instead: the dense form (`dense_conv`), or at
small batches the patch tensor (`im2col`). `StridedConv` has the
parameters (names, shapes, initialisers) of `flax.linen.Conv`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.kernels import dense_conv
from gan_jax.kernels import im2col
from gan_jax.models import layers
from gan_jax.kernels import upsample

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Measured fwd+bwd on the 2-core CPU, batch 128 (benchmarks/layer_benchmark.py): the phase
# gradient is faster for 7x7 and 8x8 outputs (31 against 49 and 32 against 45 ms), slower for
# 4x4 (26 against 21 ms) and 2x2 outputs (3.2 s against 0.5 s).
AUTO_PHASE_MIN_OUTPUT_SIDE = 7


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
  """(low, high) padding of a 'SAME' convolution along one axis, as XLA computes it."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


def gradient_taps(kernel_size: int, stride: int, pad_lo: int) -> tuple[np.ndarray, int, int]:
  """Kernel tap per (correlation offset, input phase) of the input gradient, along one axis.

  Returns:
    taps: int [m, stride]; taps[j, r] is the tap that input phase r takes from output
      gradient offset (j - d_max), or -1 for none.
    d_min, d_max: the range of d = (t - r - pad_lo) / stride over the used taps; the
      packed correlation pads the output gradient by (d_max, -d_min).
  """
  pairs = [(r, t, (t - r - pad_lo) // stride) for r in range(stride) for t in range(kernel_size)
           if (t - r - pad_lo) % stride == 0]
  return upsample.tap_table(pairs, stride, reverse=True)


def input_gradient(dy: jax.Array, kernel: jax.Array, stride: int, input_shape: tuple[int, ...]) -> jax.Array:
  """d loss / d x of `lax.conv_general_dilated(x, kernel, (s, s), 'SAME')`, given dy = d loss / d y."""
  k, _, c_in, c_out = kernel.shape
  _, height, width, _ = input_shape
  ty, dy_min, dy_max = gradient_taps(k, stride, same_padding(height, k, stride)[0])
  tx, dx_min, dx_max = gradient_taps(k, stride, same_padding(width, k, stride)[0])
  packed = upsample.gather_taps(kernel, ty, tx)  # [my, mx, s, s, in, out]
  # Correlate over out channels, produce (phase_y, phase_x, in) channels.
  packed = packed.transpose(0, 1, 5, 2, 3, 4).reshape(ty.shape[0], tx.shape[0], c_out, stride * stride * c_in)
  dx = jax.lax.conv_general_dilated(dy, packed, (1, 1), ((dy_max, -dy_min), (dx_max, -dx_min)),
                                    dimension_numbers=_DIMENSION_NUMBERS)
  return upsample.depth_to_space(dx, stride)[:, :height, :width, :]


def _conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def strided_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (s, s), 'SAME')` (NHWC, HWIO) with a phase-decomposed input gradient."""
  return _conv(x, kernel, stride)


def _strided_conv_fwd(x, kernel, stride):
  return _conv(x, kernel, stride), (x, kernel)


def _strided_conv_bwd(stride, residuals, dy):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(lambda w: _conv(x, w, stride), kernel)
  (d_kernel,) = kernel_vjp(dy)
  return input_gradient(dy, kernel, stride, x.shape).astype(x.dtype), d_kernel


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def uses_phase_gradient(input_shape: tuple[int, ...], stride: int) -> bool:
  """Whether `conv_same` takes the phase-decomposed input gradient for this NHWC input."""
  out_side = min(-(-input_shape[1] // stride), -(-input_shape[2] // stride))
  return stride > 1 and out_side >= AUTO_PHASE_MIN_OUTPUT_SIDE


def auto_impl(input_shape: tuple[int, ...], stride: int, backend: str, kernel_shape: tuple[int, ...] | None = None) -> str:
  """What `conv_same` runs for this NHWC input on this backend: 'phase', 'dense', 'im2col' or 'xla'.

  'im2col' needs `kernel_shape` (kh, kw, C_in, C_out): without it a tiny grid gets 'dense'.
  """
  if uses_phase_gradient(input_shape, stride):
    return "phase"
  in_hw = tuple(input_shape[1:3])
  out_hw = (-(-in_hw[0] // stride), -(-in_hw[1] // stride))
  if not dense_conv.prefers_dense(in_hw, out_hw, backend):
    return "xla"
  if kernel_shape is not None and im2col.prefers_im2col(input_shape[0], in_hw, out_hw, kernel_shape):
    return "im2col"
  return "dense"


def conv_same(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """A square-stride 'SAME' convolution in the formulation that is fastest for its size."""
  impl = auto_impl(x.shape, stride, jax.default_backend(), kernel.shape)
  if impl == "phase":
    return strided_conv(x, kernel, stride)
  if impl == "im2col":
    padding = tuple(same_padding(x.shape[axis], kernel.shape[axis - 1], stride) for axis in (1, 2))
    return im2col.conv(x, kernel, stride, padding)
  if impl == "dense":
    return dense_conv.dense_conv(x, kernel, functools.partial(_conv, stride=stride))
  return _conv(x, kernel, stride)


class StridedConv(nn.Module):
  """`nn.Conv(features, (k, k), strides=(s, s), padding='SAME')` computed by `conv_same`.

  `spectral_norm` divides the kernel by its spectral norm on every call
  (`layers.spectral_normalize`; Miyato et al., 2018).
  """
  features: int
  kernel_size: int
  stride: int
  spectral_norm: bool = False
  dtype: Any = jnp.float32
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    if self.spectral_norm:
      kernel = layers.spectral_normalize(kernel)
    y = conv_same(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
    if not self.use_bias:
      return y
    return y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(self.dtype)
