"""Convolutions as one matmul over an explicit patch tensor (im2col), for small batches on tiny grids.

The patch tensor holds, for every output pixel, the k x k input taps it reads (k*k*C_in
values), gathered by k*k strided slices of the padded input; the layer is then that tensor
times the kernel reshaped to [k*k*C_in, C_out]. A transposed convolution is the same over
its zero-dilated input. The gradients are matmuls and the slices' adjoints (pads and adds),
with no kernel-sized gather or scatter.

On tiny grids XLA:CPU's own convolutions are slow and the dense form (`dense_conv`) builds a
[in pixels x C_in, out pixels x C_out] matrix every step; im2col materialises only the patches.
Measured on the 2-core CPU with YNN fusions off (every entrypoint's default), forward+backward:
DCGAN-CIFAR10's 4x4x256 -> 2x2x512 discriminator layer 99 ms dense against 26 ms im2col at batch
128, 52 against 11 ms at batch 32; its 2x2x512 -> 4x4x256 up-sampling 95 against 65 ms at batch
64; whole train steps, both forms side by side in one process: pix2pix at batch 8 215 -> 161 ms,
dcgan_cifar10 at batch 128 653 -> 555 ms. The dense form stays faster where its matrix is smaller
than the patch tensor (2x2x512 -> 1x1x512 at batch 128: 9.6 against 22 ms; the up-sampling above
at batch 128: 98 against 127 ms), so `prefers_im2col` compares the two sizes. Up-sampling from
2x2-4x4 inputs has since gone to `upsample.conv_transpose_phase_im2col` on CPU (patches of the
undilated input per output phase, a quarter of these), so for transposed convolutions `auto` asks
`prefers_im2col` only on 1x1 and 1xN inputs.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# im2col where dense-matrix elements >= this x patch-tensor elements. Convolutions: im2col won at ratios
# of 2 and more (the DCGAN-CIFAR10 layer above at batches 32-256, 117 against 54 ms at 256) and lost at 1
# (2x2 -> 1x1 at batch 128). Transposed convolutions: im2col won at ratios of 1 and 2 (DCGAN-CIFAR10's
# up-sampling at batches 64 and 32: 65 against 95 ms, 35 against 46 ms), tied at 4 and 8 (pix2pix's
# 1x1 -> 2x2 and 2x2 -> 4x4 at batch 8) and lost at 0.5 and below (batch 128: 127 against 98 ms).
IM2COL_MIN_DENSE_RATIO = 2
IM2COL_MIN_DENSE_RATIO_TRANSPOSED = 1


def patch_elements(batch: int, out_hw: tuple[int, int], kernel_shape: tuple[int, ...]) -> int:
  """Elements of a layer's patch tensor: every output pixel's kh x kw x C_in taps."""
  return batch * math.prod(out_hw) * math.prod(kernel_shape[:3])


def prefers_im2col(batch: int, in_hw: tuple[int, int], out_hw: tuple[int, int], kernel_shape: tuple[int, ...],
                   transposed: bool = False) -> bool:
  """Whether im2col beats the dense form for a tiny-grid layer (asked only where `dense_conv.prefers_dense`).

  Args:
    batch: examples per call.
    in_hw: the input grid (undilated, for a transposed convolution).
    out_hw: the output grid.
    kernel_shape: (kh, kw, C_in, C_out).
    transposed: a transposed convolution (its patches come from the zero-dilated input).
  """
  dense = math.prod(in_hw) * kernel_shape[2] * math.prod(out_hw) * kernel_shape[3]
  ratio = IM2COL_MIN_DENSE_RATIO_TRANSPOSED if transposed else IM2COL_MIN_DENSE_RATIO
  return dense >= ratio * patch_elements(batch, out_hw, kernel_shape)


def conv(x: jax.Array, kernel: jax.Array, stride: int, padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (s, s), padding)` (NHWC, HWIO) as patches @ kernel."""
  kh, kw, c_in, c_out = kernel.shape
  padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  out_h = (padded.shape[1] - kh) // stride + 1
  out_w = (padded.shape[2] - kw) // stride + 1
  taps = [padded[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(taps, axis=-1)  # [N, out_h, out_w, kh*kw*C_in], tap-major as the kernel
  return patches @ kernel.reshape(kh * kw * c_in, c_out)


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: tuple[int, int]) -> jax.Array:
  """`lax.conv_transpose(x, kernel, (s, s), ...)` with the dilated input's (low, high) `padding`, as im2col."""
  lo, hi = padding
  dilated = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo, hi, stride - 1), (lo, hi, stride - 1), (0, 0, 0)))
  return conv(dilated, kernel, 1, ((0, 0), (0, 0)))
