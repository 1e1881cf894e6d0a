"""Stride-1 convolutions whose gradients, to any order, are again plain NHWC x HWIO convolutions.

XLA:CPU runs a convolution as an Eigen library call only in the canonical form
(batch-spatial-feature input, spatial-in-out kernel). Autodiff's gradient convolutions are not in
that form: the input gradient reads the kernel as [k, k, out, in] and the kernel gradient
contracts over the batch. In a program's entry computation XLA rewrites them with transposes,
but inside a `lax.cond` branch (or a loop body) it does not, and emits them as naive loops.
Measured on the 2-core CPU (YNN fusions off), the R1 penalty of a 3-layer 28x28 critic at batch
16 inside `lax.cond`: 1,634 ms through XLA's own gradients against 12.5 ms with this module
(the same value to 5e-6; outside the cond both take about 11 ms).

`conv` writes each gradient as a call of itself with explicit transposes and flips: the input
gradient convolves the output gradient with the flipped, in/out-swapped kernel; the kernel
gradient treats input channels as the batch and the batch as features. Second-order gradients
(R1 penalties differentiate a gradient) go through the same rule, so every convolution XLA sees
is canonical. Other backends run `jax.lax.conv_general_dilated` unchanged.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def same_padding(kernel_shape: tuple[int, ...]) -> Padding:
  """The explicit (low, high) padding of a stride-1 'SAME' convolution with this [kh, kw, ...] kernel."""
  return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_shape[:2])


def _lax_conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _canonical(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
  return _lax_conv(x, kernel, padding)


def _canonical_fwd(x, kernel, padding):
  return _canonical(x, kernel, padding), (x, kernel)


def _canonical_bwd(padding, residuals, dy):
  x, kernel = residuals
  (kh, kw) = kernel.shape[:2]
  # dx[j] = sum_a dy[j + low - a] w[a]: dy padded by (k - 1 - low, k - 1 - high), flipped kernel.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = _canonical(dy, flipped, ((kh - 1 - padding[0][0], kh - 1 - padding[0][1]),
                                (kw - 1 - padding[1][0], kw - 1 - padding[1][1])))
  # dw[a, i, o] = sum_{b, j} x_pad[b, j + a, i] dy[b, j, o]: input channels as the batch, the batch as
  # the features, dy as a [H_out, W_out, B, C_out] kernel, the input's own padding.
  dw = _canonical(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), padding).transpose(1, 2, 0, 3)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_canonical.defvjp(_canonical_fwd, _canonical_bwd)


def conv(x: jax.Array, kernel: jax.Array, padding: Padding | str = "SAME", backend: str | None = None) -> jax.Array:
  """A stride-1 NHWC x HWIO convolution whose gradients XLA:CPU runs as library calls anywhere in a program.

  Args:
    x: [B, H, W, C_in].
    kernel: [kh, kw, C_in, C_out].
    padding: 'SAME', 'VALID' or ((low, high), (low, high)); each at most k - 1.
    backend: the backend the program compiles for (default: JAX's default backend).

  Returns:
    [B, H_out, W_out, C_out], equal to `jax.lax.conv_general_dilated` with stride 1.
  """
  if padding == "SAME":
    padding = same_padding(kernel.shape)
  elif padding == "VALID":
    padding = ((0, 0), (0, 0))
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if any(not 0 <= p <= k - 1 for (lo, hi), k in zip(padding, kernel.shape[:2]) for p in (lo, hi)):
    raise ValueError(f"padding {padding} must lie in [0, k - 1] for a {kernel.shape[:2]} kernel")
  if (backend or jax.default_backend()) != "cpu":
    return _lax_conv(x, kernel, padding)
  return _canonical(x, kernel, padding)
