"""Convolutions over tiny spatial grids computed as one dense matrix product.

A convolution is linear in its input, so on an H x W grid it is a matrix of shape
[H*W*C_in, H_out*W_out*C_out] whose (input pixel p, output pixel q) block is the
kernel tap t that joins p and q, or zero. On a 2x2 or 4x4 grid nearly every pair of
pixels is joined, so the matrix costs about the multiply-adds of the convolution
itself, and the layer becomes a plain matmul, forward and backward. XLA:CPU runs
convolutions over such tiny grids very slowly: the 2x2x512 -> 4x4x256 up-sampling of
DCGAN-CIFAR10 took 468 ms forward and 750 ms forward+backward at batch 128, the
4x4x256 -> 2x2x512 discriminator convolution 500 ms forward+backward; as a matmul
28 / 88 ms and 95 ms (benchmarks/layer_benchmark.py, 2-core CPU).

Which tap joins which pixels is read off the convolution itself (applied to one-hot
images and one-hot kernels), so the dense form computes exactly what the given
convolution computes, whatever its stride, padding or dilation.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Dense form only when (input pixels) x (output pixels) is at most this: the 2x2 <-> 4x4
# layers (64 pairs) were 5-8x faster as a matmul on CPU, the 4x4 <-> 8x8 ones (1,024 pairs,
# mostly zero blocks) 19-26x slower.
DENSE_MAX_PIXEL_PAIRS = 64

LinearConv = Callable[[jax.Array, jax.Array], jax.Array]


def prefers_dense(in_hw: tuple[int, int], out_hw: tuple[int, int], backend: str) -> bool:
  """Whether the dense form is the faster one for this grid on this backend (measured on CPU only)."""
  return backend == "cpu" and in_hw[0] * in_hw[1] * out_hw[0] * out_hw[1] <= DENSE_MAX_PIXEL_PAIRS


def connection_table(conv: LinearConv, in_hw: tuple[int, int], kernel_hw: tuple[int, int]) -> np.ndarray:
  """table[p, q, t] = 1 where `conv` joins input pixel p to output pixel q through kernel tap t.

  Args:
    conv: `conv(x [N, H, W, C_in], kernel [kh, kw, C_in, C_out]) -> [N, H_out, W_out, C_out]`.
    in_hw: the input grid (H, W).
    kernel_hw: the kernel's (kh, kw).

  Returns:
    float32 [H*W, H_out, W_out, kh*kw], input pixels and taps in row-major order.
  """
  height, width = in_hw
  taps = kernel_hw[0] * kernel_hw[1]
  one_hot_images = np.eye(height * width, dtype=np.float32).reshape(height * width, height, width, 1)
  one_hot_taps = np.eye(taps, dtype=np.float32).reshape(kernel_hw[0], kernel_hw[1], 1, taps)
  with jax.ensure_compile_time_eval():  # concrete even inside a jit trace
    table = np.asarray(conv(jnp.asarray(one_hot_images), jnp.asarray(one_hot_taps)))
  return table


def dense_matrix(kernel: jax.Array, table: np.ndarray) -> jax.Array:
  """The convolution as a [P_in * C_in, P_out * C_out] matrix, from its connection table."""
  kh, kw, c_in, c_out = kernel.shape
  p_in, h_out, w_out, taps = table.shape
  pairs = jnp.asarray(table.reshape(p_in, h_out * w_out, taps), kernel.dtype)
  blocks = jnp.einsum("pqt,tio->piqo", pairs, kernel.reshape(kh * kw, c_in, c_out))
  return blocks.reshape(p_in * c_in, h_out * w_out * c_out)


def dense_conv(x: jax.Array, kernel: jax.Array, conv: LinearConv) -> jax.Array:
  """`conv(x, kernel)` computed as x (flattened per example) @ the convolution's dense matrix."""
  n, height, width, _ = x.shape
  table = connection_table(conv, (height, width), kernel.shape[:2])
  y = x.reshape(n, -1) @ dense_matrix(kernel, table)
  return y.reshape(n, table.shape[1], table.shape[2], kernel.shape[-1])
