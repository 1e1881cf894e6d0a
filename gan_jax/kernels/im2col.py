"""Convolutions as one matmul over an explicit patch tensor (im2col), for small batches on tiny grids.

The patch tensor holds, for every output pixel, the k x k input taps it reads (k*k*C_in
values), gathered by k*k strided slices of the padded input; the layer is then that tensor
times the kernel reshaped to [k*k*C_in, C_out]. A transposed convolution is the same over
its zero-dilated input. The gradients are matmuls and the slices' adjoints (pads and adds),
with no kernel-sized gather or scatter.

On tiny grids this beats both XLA:CPU's convolutions and the dense form (`dense_conv`)
while the patch tensor is small next to the dense matrix, i.e. at small batches: pix2pix's
U-Net at batch 8 (2-core CPU, forward+backward): 4x4x256 -> 2x2x512 37.4 ms dense, 1.6 ms
im2col; 2x2x1024 -> 4x4x256 up-sampling 63.6 ms dense, 11.8 ms im2col. The dense form's cost
is mostly building its matrix, the same for any batch, and im2col's grows with the batch, so
`prefers_im2col` takes im2col where the dense matrix is a few times larger than the patch tensor.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# im2col where dense-matrix elements >= this x patch-tensor elements, measured forward+backward on the
# 2-core CPU. Convolutions: im2col won from a ratio of about 2 (DCGAN-CIFAR10's 4x4x256 -> 2x2x512
# 5x5 layer at batch 128, ratio 2.6: 29 ms against 59 ms dense; pix2pix's 4x4 -> 2x2 at batch 8,
# ratio 64: 1.6 against 37 ms), and the two broke even near 1 (2x2x512 -> 1x1 at batch 128:
# 10-12 ms either way). A transposed convolution's patches are mostly the dilation's zeros, so it
# needs twice the ratio: im2col won at 4 (1x1x512 -> 2x2 at batch 8: 3.1 against 4.9 ms) and lost
# at 1.3 (DCGAN-CIFAR10's 2x2x512 -> 4x4x256 at batch 32: 46 against 38 ms).
IM2COL_MIN_DENSE_RATIO = 2
IM2COL_MIN_DENSE_RATIO_TRANSPOSED = 4


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
