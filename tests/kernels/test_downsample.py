"""Strided convolutions with a phase-decomposed input gradient equal XLA's convolution and its gradients."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.kernels import downsample

CASES = [  # (input H, W, C), kernel, stride, out channels: every discriminator layer shape and odd sizes
    ((28, 28, 1), 5, 2, 8), ((14, 14, 8), 5, 2, 16), ((32, 32, 3), 4, 2, 8), ((4, 4, 16), 4, 2, 8),
    ((7, 9, 4), 5, 2, 6), ((13, 13, 3), 3, 3, 5), ((8, 8, 2), 1, 2, 3)]


@pytest.mark.parametrize("shape, k, s, c_out", CASES)
def test_strided_conv_matches_xla_forward_and_both_gradients(shape, k, s, c_out):
  x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, shape[-1], c_out)) * 0.2
  reference = lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), "SAME",
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  fast = lambda x, w: downsample.strided_conv(x, w, s)
  np.testing.assert_allclose(fast(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
  target = jax.random.normal(jax.random.PRNGKey(2), reference(x, w).shape)
  loss = lambda conv: (lambda x, w: jnp.sum(jnp.sin(conv(x, w)) * target))
  chex.assert_trees_all_close(jax.jit(jax.grad(loss(fast), (0, 1)))(x, w),
                              jax.grad(loss(reference), (0, 1))(x, w), rtol=1e-4, atol=1e-4)


def test_strided_conv_module_has_the_parameters_of_nn_conv():
  x = jnp.ones((2, 14, 14, 3))
  ours = downsample.StridedConv(8, 5, 2).init(jax.random.PRNGKey(0), x)
  flax_conv = nn.Conv(8, (5, 5), strides=(2, 2), padding="SAME")
  theirs = flax_conv.init(jax.random.PRNGKey(0), x)
  chex.assert_trees_all_equal_shapes(ours, theirs)
  chex.assert_trees_all_close(ours, theirs)  # same initialisers, same key use
  np.testing.assert_allclose(downsample.StridedConv(8, 5, 2).apply(theirs, x), flax_conv.apply(theirs, x),
                             rtol=1e-5, atol=1e-5)


def test_input_gradient_uses_no_dilated_convolution():
  x = jnp.ones((2, 14, 14, 4))
  w = jnp.ones((5, 5, 4, 8))
  jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(downsample.strided_conv(x, w, 2))))(x)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  # Forward and the input gradient; none with lhs (input) dilation.
  assert convs and all(tuple(e.params["lhs_dilation"]) == (1, 1) for e in convs)


def _dilated_convs(x, w):
  jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(downsample.conv_same(x, w, 2))))(x)
  return [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"
          and tuple(e.params["lhs_dilation"]) != (1, 1)]


def test_auto_rule_keeps_xla_gradient_for_small_outputs():
  w = jnp.ones((4, 4, 4, 8))
  assert downsample.uses_phase_gradient((2, 14, 14, 4), 2)  # 7x7 output
  assert not downsample.uses_phase_gradient((2, 8, 8, 4), 2)  # 4x4 output
  assert not downsample.uses_phase_gradient((2, 28, 28, 4), 1)
  assert _dilated_convs(jnp.ones((2, 8, 8, 4)), w)  # XLA's gradient: a zero-dilated convolution
  assert not _dilated_convs(jnp.ones((2, 16, 16, 4)), w)
