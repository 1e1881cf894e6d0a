"""im2col convolutions equal XLA's, values and gradients; `auto` takes them for small batches on tiny grids."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.kernels import downsample
from gan_jax.kernels import im2col
from gan_jax.kernels import upsample

_DN = ("NHWC", "HWIO", "NHWC")


def _values_and_gradients(fn, x, w):
  target = jax.random.normal(jax.random.PRNGKey(9), jax.eval_shape(fn, x, w).shape)
  loss = lambda x, w: jnp.sum(jnp.sin(fn(x, w)) * target)
  return fn(x, w), jax.grad(loss, argnums=(0, 1))(x, w)


@pytest.mark.parametrize("shape, k, stride, padding", [
    ((4, 4, 8), 4, 2, ((1, 1), (1, 1))),  # pix2pix's 4x4 -> 2x2
    ((2, 2, 8), 4, 2, ((1, 1), (1, 1))),  # 2x2 -> 1x1
    ((7, 7, 3), 4, 2, ((1, 1), (1, 1))),  # an odd side: floor((7 + 2 - 4) / 2) + 1 = 3
    ((5, 3, 4), 3, 1, ((1, 1), (0, 2))),  # stride 1, uneven padding
    ((6, 6, 2), 5, 2, ((1, 2), (1, 2))),  # DCGAN's 5x5 'SAME'
])
def test_conv_equals_xla_convolution(shape, k, stride, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, shape[-1], 6)) * 0.3
  xla = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=_DN)
  expected, expected_grads = _values_and_gradients(xla, x, w)
  got, got_grads = _values_and_gradients(lambda x, w: im2col.conv(x, w, stride, padding), x, w)
  chex.assert_shape(got, expected.shape)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(got_grads, expected_grads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side, k", [(1, 4), (2, 4), (2, 3), (3, 5)])
def test_conv_transpose_equals_the_dilated_transposed_convolution(side, k):
  x = jax.random.normal(jax.random.PRNGKey(2), (2, side, side, 5))
  w = jax.random.normal(jax.random.PRNGKey(3), (k, k, 5, 4)) * 0.3
  expected, expected_grads = _values_and_gradients(
      lambda x, w: upsample.conv_transpose_dilated(x, w, 2), x, w)
  padding = upsample.same_transpose_padding(k, 2)
  got, got_grads = _values_and_gradients(lambda x, w: im2col.conv_transpose(x, w, 2, padding), x, w)
  chex.assert_shape(got, (2, 2 * side, 2 * side, 4))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(got_grads, expected_grads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch, shape, kernel, expected", [
    (8, (4, 4, 256), (4, 4, 256, 512), "im2col"),  # pix2pix at its batch: dense matrix 64x the patches
    (128, (4, 4, 256), (4, 4, 256, 512), "im2col"),  # DCGAN-CIFAR10's D layer in its G update: ratio 4
    (256, (4, 4, 256), (4, 4, 256, 512), "im2col"),  # the same on [reals; fakes]: ratio 2
    (512, (4, 4, 256), (4, 4, 256, 512), "dense"),  # ratio 1
    (128, (2, 2, 512), (4, 4, 512, 512), "dense"),  # ratio 1
    (8, (2, 2, 512), None, "dense"),  # no kernel shape: the dense form as before
    (8, (8, 8, 128), (4, 4, 128, 256), "xla"),  # not a tiny grid
])
def test_downsampling_takes_im2col_for_small_batches_on_tiny_grids(batch, shape, kernel, expected):
  assert downsample.auto_impl((batch,) + shape, 2, "cpu", kernel) == expected
  assert downsample.auto_impl((batch,) + shape, 2, "gpu", kernel) in ("xla", "phase")


@pytest.mark.parametrize("batch, shape, kernel, expected", [
    (8, (1, 1, 512), (4, 4, 512, 512), "im2col"),  # pix2pix's innermost up-sampling: dense 4x the patches
    (128, (1, 1, 512), (4, 4, 512, 512), "dense"),  # ratio 0.25
    # From 2x2 to 4x4 inputs one matmul per output phase, at every batch.
    (8, (2, 2, 1024), (4, 4, 1024, 256), "phase_im2col"),
    (128, (2, 2, 512), (4, 4, 512, 256), "phase_im2col"),
    (8, (4, 4, 512), (4, 4, 512, 128), "phase_im2col"),
    (8, (8, 8, 256), (4, 4, 256, 64), "subpixel"),
])
def test_upsampling_on_tiny_grids_takes_im2col_dense_or_phase_matmuls(batch, shape, kernel, expected):
  assert upsample.auto_impl((batch,) + shape, 2, "cpu", kernel) == expected


def test_modules_in_im2col_form_equal_their_xla_form_with_the_same_parameters():
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 2, 2, 16))
  up = upsample.UpConv(8, 4, 2, impl="im2col")
  params = up.init(jax.random.PRNGKey(5), x)
  np.testing.assert_allclose(up.apply(params, x), up.clone(impl="transpose").apply(params, x), rtol=1e-5, atol=1e-5)
  # StridedConv's auto form at batch 2 on a 4x4 grid is im2col on CPU; XLA's convolution is the reference.
  down = downsample.StridedConv(8, 4, 2, use_bias=False)
  y = jax.random.normal(jax.random.PRNGKey(6), (2, 4, 4, 16))
  down_params = down.init(jax.random.PRNGKey(7), y)
  assert set(down_params["params"]) == {"kernel"}
  assert downsample.auto_impl(y.shape, 2, "cpu", (4, 4, 16, 8)) == "im2col"
  expected = jax.lax.conv_general_dilated(y, down_params["params"]["kernel"], (2, 2), "SAME", dimension_numbers=_DN)
  np.testing.assert_allclose(down.apply(down_params, y), expected, rtol=1e-5, atol=1e-5)
