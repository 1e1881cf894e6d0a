"""Up-sampling convolutions for generators.

`UpConv` owns a kernel with the layout and initialiser of `flax.linen.ConvTranspose`
(kh, kw, in, out), so parameters and checkpoints do not depend on how the layer is
computed. `impl` selects the computation:

* `transpose`: `lax.conv_transpose`, exactly what `flax.linen.ConvTranspose` runs
  (XLA lowers it to a convolution over the zero-dilated input: most multiply-adds hit
  inserted zeros, and its backward pass is slow on CPU).
* `subpixel`: phase decomposition. Output pixel (s*i + r) of a stride-s transposed
  convolution only meets the kernel taps t with (r + t - pad) divisible by s, so each
  of the s*s output phases is a small stride-1 convolution of the undilated input.
  All phases are packed into ONE stride-1 convolution with s*s*out channels, followed
  by depth-to-space (Shi et al., 2016). Same parameters, same outputs up to float
  rounding, about s*s times fewer multiply-adds.
* `dense`: one matmul with the layer's dense matrix (`dense_conv`), for tiny grids.
* `im2col`: one matmul with the zero-dilated input's patch tensor (`im2col`), for tiny grids at small batches.
* `phase_im2col`: the sub-pixel phases without the packed kernel: one matmul per output phase, of
  the undilated input's shifted copies that phase reads (its own taps only) times those taps of the
  kernel, taken by static slices. No multiply-add meets an inserted or packed zero and no kernel is
  rearranged by a gather, which on tiny grids costs more than the convolution.
* `auto`: on CPU `phase_im2col` for stride > 1 and inputs of 2x2 to 4x4 (measured below); then
  `subpixel` for stride > 1 and inputs of at least 4x4 (measured faster on CPU and GPU,
  docs/benchmark.md); for the remaining tiny inputs on CPU where `dense_conv.prefers_dense`
  (1x1, 1xN) `im2col` where `im2col.prefers_im2col` (small batches) and otherwise `dense`; else
  the dilated form.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.kernels import dense_conv
from gan_jax.kernels import im2col

UPSAMPLE_IMPLS = ("auto", "transpose", "subpixel", "dense", "im2col", "phase_im2col")
# Off CPU, `auto` keeps the dilated form for inputs smaller than this: on XLA:CPU the sub-pixel form of
# a 2x2 -> 4x4 layer was 6x slower (4.6 s against 0.75 s fwd+bwd, batch 128, 512 -> 256
# channels), while from 4x4 inputs on it was 7-9x faster.
AUTO_SUBPIXEL_MIN_SIDE = 4
# `auto` takes `phase_im2col` on CPU for stride > 1 and inputs of these sides. Forward+backward on
# the 2-core CPU (YNN fusions off), against what `auto` took before: 2x2x1024 -> 4x4x256 at batch 8
# (pix2pix) 49 -> 27 ms (im2col), 2x2x512 -> 4x4x256 at batch 64 177 -> 44 ms (im2col) and at 128
# 182 -> 79 ms (dense), 4x4x512 -> 8x8x128 at batch 8 19 -> 14 ms and 4x4x256 -> 8x8x128 at batch 32
# 27 -> 21 ms (subpixel); it lost on 1x1 inputs (29 against 14 ms) and from 7x7 on (DCGAN-MNIST's
# 7x7x128 -> 14x14x64 at 128: 178 against 83 ms), and tied at 8x8.
AUTO_PHASE_IM2COL_SIDES = (2, 4)
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def same_transpose_padding(kernel_size: int, stride: int) -> tuple[int, int]:
  """Low/high padding that `lax.conv_transpose(padding='SAME')` applies to the dilated input."""
  pad_len = kernel_size + stride - 2
  pad_lo = kernel_size - 1 if stride > kernel_size - 1 else int(np.ceil(pad_len / 2))
  return pad_lo, pad_len - pad_lo


def tap_table(pairs, stride: int, reverse: bool = False) -> tuple[np.ndarray, int, int]:
  """Lays out (phase r, kernel tap t, offset d) triples as taps[j, r] = t, -1 where none.

  Row j is d - d_min, or d_max - d with `reverse` (a correlation that reads offset -d).

  Returns:
    (taps int [d_max - d_min + 1, stride], d_min, d_max).
  """
  offsets = [d for _, _, d in pairs]
  d_min, d_max = min(offsets), max(offsets)
  taps = np.full((d_max - d_min + 1, stride), -1, np.int32)
  for r, t, d in pairs:
    taps[d_max - d if reverse else d - d_min, r] = t
  return taps, d_min, d_max


def gather_taps(kernel: jax.Array, taps_y: np.ndarray, taps_x: np.ndarray) -> jax.Array:
  """kernel[taps_y[j, r], taps_x[i, q]] as [m_y, m_x, s, s, in, out]; zero where a table holds -1."""
  k = kernel.shape[0]
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # index k: an appended zero tap
  ty, tx = np.where(taps_y < 0, k, taps_y), np.where(taps_x < 0, k, taps_x)
  return padded[ty[:, None, :, None], tx[None, :, None, :]]


def phase_taps(kernel_size: int, stride: int) -> tuple[np.ndarray, int, int]:
  """Which kernel tap each (input offset, output phase) pair uses, along one axis.

  Returns:
    taps: int array [num_offsets, stride]; taps[o, r] is the kernel index that output
      phase r applies to input offset (o + offset_lo), or -1 when it applies none.
    offset_lo, offset_hi: the range of input offsets, relative to the output pixel's
      source pixel i (the packed convolution pads by -offset_lo and offset_hi).
  """
  pad_lo, _ = same_transpose_padding(kernel_size, stride)
  pairs = [(r, t, (r + t - pad_lo) // stride) for r in range(stride) for t in range(kernel_size)
           if (r + t - pad_lo) % stride == 0]
  return tap_table(pairs, stride)


def packed_subpixel_kernel(kernel: jax.Array, stride: int) -> tuple[jax.Array, int, int]:
  """Rearranges a (k, k, in, out) transposed-conv kernel into a stride-1 (m, m, in, s*s*out) kernel.

  Output channels are ordered (phase_y, phase_x, out) for depth-to-space.
  """
  k, _, c_in, c_out = kernel.shape
  taps, lo, hi = phase_taps(k, stride)
  m = taps.shape[0]
  packed = gather_taps(kernel, taps, taps)  # [m, m, s, s, in, out]
  packed = packed.transpose(0, 1, 4, 2, 3, 5).reshape(m, m, c_in, stride * stride * c_out)
  return packed, lo, hi


def depth_to_space(x: jax.Array, stride: int) -> jax.Array:
  """[N, H, W, s*s*C] with channels (phase_y, phase_x, C) -> [N, s*H, s*W, C]."""
  n, h, w, c = x.shape
  c_out = c // (stride * stride)
  x = x.reshape(n, h, w, stride, stride, c_out).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * stride, w * stride, c_out)


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Equals lax.conv_transpose(x, kernel, (s, s), 'SAME') with one stride-1 convolution."""
  packed, lo, hi = packed_subpixel_kernel(kernel, stride)
  y = jax.lax.conv_general_dilated(x, packed, (1, 1), ((-lo, hi), (-lo, hi)),
                                   dimension_numbers=_DIMENSION_NUMBERS)
  return depth_to_space(y, stride)


def conv_transpose_phase_im2col(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Equals `conv_transpose_dilated(x, kernel, stride)` ('SAME') with one im2col matmul per output phase.

  Output pixel (s*i + r_y, s*j + r_x) sums, over the taps (t_y, t_x) of its phase, the input
  pixel (i + d_y, j + d_x) times kernel[t_y, t_x] (`phase_taps`). A phase's offsets are
  consecutive and its taps step by s, so each phase is a stride-1 'VALID' convolution of a window
  of the undilated input with the kernel's every s-th tap (static slices), run as `im2col.conv`;
  the s*s results are interleaved.
  """
  n, height, width, _ = x.shape
  taps, lo, hi = phase_taps(kernel.shape[0], stride)
  before = max(0, -lo)
  padded = jnp.pad(x, ((0, 0), (before, max(0, hi)), (before, max(0, hi)), (0, 0)))

  def span(phase: int) -> tuple[int, int, int] | None:
    """(first input offset, first kernel tap, taps) of one phase along one axis; None if it has no tap."""
    used = [j for j in range(taps.shape[0]) if taps[j, phase] >= 0]
    return (used[0] + lo, int(taps[used[0], phase]), len(used)) if used else None

  rows = []
  for phase_y in range(stride):
    row = []
    for phase_x in range(stride):
      if span(phase_y) is None or span(phase_x) is None:  # a kernel narrower than the stride: zero
        row.append(jnp.zeros((n, height, width, kernel.shape[-1]), x.dtype))
        continue
      (dy, ty, ny), (dx, tx, nx) = span(phase_y), span(phase_x)
      window = padded[:, before + dy:before + dy + height + ny - 1, before + dx:before + dx + width + nx - 1, :]
      sub_kernel = kernel[ty:ty + stride * (ny - 1) + 1:stride, tx:tx + stride * (nx - 1) + 1:stride]
      row.append(im2col.conv(window, sub_kernel, 1, ((0, 0), (0, 0))))
    rows.append(jnp.stack(row, axis=3))  # [N, H, W, s (phase_x), C_out]
  y = jnp.stack(rows, axis=2)  # [N, H, s (phase_y), W, s, C_out]
  return y.reshape(n, height * stride, width * stride, kernel.shape[-1])


def conv_transpose_dilated(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """What flax.linen.ConvTranspose(padding='SAME', transpose_kernel=False) computes."""
  return jax.lax.conv_transpose(x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)


def auto_impl(input_shape: tuple[int, ...], stride: int, backend: str, kernel_shape: tuple[int, ...] | None = None) -> str:
  """The formulation `impl='auto'` runs for this NHWC input on this backend ('im2col' needs `kernel_shape`)."""
  side_hw = tuple(input_shape[1:3])
  lo, hi = AUTO_PHASE_IM2COL_SIDES
  if backend == "cpu" and stride > 1 and lo <= min(side_hw) and max(side_hw) <= hi:
    return "phase_im2col"
  if stride > 1 and min(side_hw) >= AUTO_SUBPIXEL_MIN_SIDE:
    return "subpixel"
  out_hw = (side_hw[0] * stride, side_hw[1] * stride)
  if not dense_conv.prefers_dense(side_hw, out_hw, backend):
    return "transpose"
  if kernel_shape is not None and im2col.prefers_im2col(input_shape[0], side_hw, out_hw, kernel_shape, True):
    return "im2col"
  return "dense"


class UpConv(nn.Module):
  """A stride-`stride` transposed convolution with 'SAME' padding (output = stride x input).

  Parameter names, shapes and initialisers match `flax.linen.ConvTranspose`.
  """
  features: int
  kernel_size: int
  stride: int
  use_bias: bool = True
  impl: str = "auto"
  dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.impl not in UPSAMPLE_IMPLS:
      raise ValueError(f"Unknown upsample_impl '{self.impl}'; choose one of: {', '.join(UPSAMPLE_IMPLS)}")
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    impl = auto_impl(x.shape, self.stride, jax.default_backend(), kernel.shape) if self.impl == "auto" else self.impl
    if impl == "subpixel" and self.stride > 1:
      y = conv_transpose_subpixel(x, kernel, self.stride)
    elif impl == "phase_im2col" and self.stride > 1:
      y = conv_transpose_phase_im2col(x, kernel, self.stride)
    elif impl == "im2col":
      y = im2col.conv_transpose(x, kernel, self.stride, same_transpose_padding(k, self.stride))
    elif impl == "dense":
      y = dense_conv.dense_conv(x, kernel, lambda x, w: conv_transpose_dilated(x, w, self.stride))
    else:
      y = conv_transpose_dilated(x, kernel, self.stride)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(self.dtype)
    return y
