"""Tiny-grid convolutions as one matmul equal the convolutions they replace, values and gradients."""
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.kernels import dense_conv
from gan_jax.kernels import downsample
from gan_jax.kernels import upsample

_DN = ("NHWC", "HWIO", "NHWC")


def _strided(x, w, stride):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=_DN)


CONVS = {  # name: (linear conv, input H, W, C_in, kernel, C_out); the DCGAN-CIFAR10 tiny layers and odd ones
    "up 2x2->4x4": (functools.partial(upsample.conv_transpose_dilated, stride=2), (2, 2, 8), 4, 6),
    "down 4x4->2x2": (functools.partial(_strided, stride=2), (4, 4, 8), 4, 6),
    "down 3x2 k3 s1": (functools.partial(_strided, stride=1), (3, 2, 5), 3, 4),
    "up 1x3->2x6 k5": (functools.partial(upsample.conv_transpose_dilated, stride=2), (1, 3, 3), 5, 2),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_dense_conv_matches_the_convolution_and_its_gradients(name):
  conv, shape, k, c_out = CONVS[name]
  x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, shape[-1], c_out)) * 0.3
  dense = lambda x, w: dense_conv.dense_conv(x, w, conv)
  expected = conv(x, w)
  got = jax.jit(dense)(x, w)
  chex.assert_shape(got, expected.shape)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  target = jax.random.normal(jax.random.PRNGKey(2), expected.shape)
  loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w)) * target))
  chex.assert_trees_all_close(jax.jit(jax.grad(loss(dense), (0, 1)))(x, w), jax.grad(loss(conv), (0, 1))(x, w),
                              rtol=1e-4, atol=1e-4)


def test_connection_table_of_a_one_by_one_kernel_is_the_identity():
  table = dense_conv.connection_table(functools.partial(_strided, stride=1), (2, 3), (1, 1))
  np.testing.assert_array_equal(table[..., 0].reshape(6, 6), np.eye(6))


@pytest.mark.parametrize("in_hw, out_hw, backend, expected", [
    ((2, 2), (4, 4), "cpu", True), ((4, 4), (2, 2), "cpu", True), ((4, 4), (8, 8), "cpu", False),
    ((8, 8), (4, 4), "cpu", False), ((2, 2), (4, 4), "gpu", False), ((4, 4), (2, 2), "tpu", False)])
def test_dense_form_only_for_tiny_grids_on_cpu(in_hw, out_hw, backend, expected):
  assert dense_conv.prefers_dense(in_hw, out_hw, backend) is expected


@pytest.mark.parametrize("shape, backend, expected", [
    ((1, 1, 1, 8), "cpu", "dense"), ((1, 2, 2, 8), "cpu", "phase_im2col"), ((1, 2, 2, 8), "gpu", "transpose"),
    ((1, 4, 4, 8), "cpu", "phase_im2col"), ((1, 4, 4, 8), "gpu", "subpixel"), ((1, 8, 8, 8), "cpu", "subpixel"),
    ((1, 7, 7, 8), "gpu", "subpixel")])
def test_upsampling_auto_choice(shape, backend, expected):
  assert upsample.auto_impl(shape, 2, backend) == expected


@pytest.mark.parametrize("shape, backend, expected", [
    ((1, 4, 4, 8), "cpu", "dense"), ((1, 4, 4, 8), "gpu", "xla"), ((1, 8, 8, 8), "cpu", "xla"),
    ((1, 14, 14, 8), "cpu", "phase")])
def test_downsampling_auto_choice(shape, backend, expected):
  assert downsample.auto_impl(shape, 2, backend) == expected


def test_modules_on_a_tiny_grid_equal_flax_layers_with_the_same_parameters():
  # On this CPU backend `auto` takes the dense form for both; parameters stay Flax's.
  assert jax.default_backend() == "cpu"
  x_up, x_down = jnp.ones((2, 2, 2, 8)) * 0.5, jax.random.normal(jax.random.PRNGKey(3), (2, 4, 4, 8))
  flax_up = nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME")
  params_up = flax_up.init(jax.random.PRNGKey(0), x_up)
  np.testing.assert_allclose(upsample.UpConv(6, 4, 2).apply(params_up, x_up), flax_up.apply(params_up, x_up),
                             rtol=1e-5, atol=1e-5)
  flax_down = nn.Conv(6, (4, 4), strides=(2, 2), padding="SAME")
  params_down = flax_down.init(jax.random.PRNGKey(0), x_down)
  np.testing.assert_allclose(downsample.StridedConv(6, 4, 2).apply(params_down, x_down),
                             flax_down.apply(params_down, x_down), rtol=1e-5, atol=1e-5)
