"""canonical_conv equals XLA's stride-1 convolution to second order, and keeps its gradients library calls."""
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.kernels import canonical_conv

_DN = ("NHWC", "HWIO", "NHWC")


def _xla(x, w, padding):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def _critic(conv, params, x):
  for w in params:
    x = jax.nn.leaky_relu(conv(x, w), 0.2)
  return jnp.sum(jnp.sin(x), axis=(1, 2, 3))


def _r1(conv, params, x):
  """The R1 penalty's shape: the squared input gradient, then its gradient with respect to the kernels."""
  penalty = lambda params: jnp.mean(jnp.sum(jax.grad(lambda x: jnp.sum(_critic(conv, params, x)))(x) ** 2,
                                            axis=(1, 2, 3)))
  return jax.value_and_grad(penalty)(params)


@pytest.mark.parametrize("shape, k, padding", [
    ((6, 6, 3), 3, "SAME"),
    ((5, 7, 2), 1, "SAME"),
    ((6, 6, 2), 4, "SAME"),  # even kernel: SAME pads (1, 2)
    ((7, 5, 3), 3, "VALID"),
    ((5, 6, 2), 3, ((0, 2), (1, 0))),
    ((5, 6, 2), (3, 1), ((2, 0), (0, 0))),  # non-square kernel, asymmetric padding
    ((6, 4, 2), (1, 5), "SAME"),
    ((2, 2, 2), 3, ((0, 2), (1, 1))),  # smaller than the kernel: the second order pads negatively
    ((1, 1, 2), 3, "SAME"),  # StyleGAN2's 1x1 last block
])
def test_values_and_two_orders_of_gradients_equal_xla(shape, k, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + shape)
  kh, kw = (k, k) if isinstance(k, int) else k
  params = [jax.random.normal(jax.random.PRNGKey(1), (kh, kw, shape[-1], 4)) * 0.3,
            jax.random.normal(jax.random.PRNGKey(2), (kh, kw, 4, 3)) * 0.3]
  ours = lambda x, w: canonical_conv.conv(x, w, padding, backend="cpu")
  xla = lambda x, w: _xla(x, w, canonical_conv.same_padding(w.shape) if padding == "SAME" else padding)
  np.testing.assert_allclose(ours(x, params[0]), xla(x, params[0]), rtol=1e-5, atol=1e-5)
  first = lambda conv: jax.grad(lambda p, x: jnp.sum(_critic(conv, p, x)), argnums=(0, 1))(params, x)
  chex.assert_trees_all_close(first(ours), first(xla), rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(_r1(ours, params, x), _r1(xla, params, x), rtol=1e-4, atol=1e-4)


def test_gradients_inside_a_cond_branch_are_canonical_convolutions():
  """XLA:CPU leaves autodiff's gradient convolutions in a cond branch non-canonical (naive loops)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 1))
  params = [jax.random.normal(jax.random.PRNGKey(j), (3, 3, c, 4)) for j, c in ((1, 1), (2, 4))]

  def forms(conv):
    loss = lambda p, i: jax.lax.cond(i % 4 == 0, lambda: _r1(conv, p, x)[0], lambda: 0.0)
    hlo = jax.jit(jax.grad(loss)).lower(params, 0).compile().as_text()
    return set(re.findall(r"dim_labels=([^,]*)", hlo))

  assert forms(lambda x, w: canonical_conv.conv(x, w, backend="cpu")) == {"b01f_01io->b01f"}
  assert forms(lambda x, w: _xla(x, w, "SAME")) != {"b01f_01io->b01f"}  # what the module is for


def test_other_backends_run_xla_and_bad_padding_is_refused():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
  assert "custom_vjp" not in str(jax.make_jaxpr(lambda x: canonical_conv.conv(x, w, backend="gpu"))(x))
  assert "custom_vjp" in str(jax.make_jaxpr(lambda x: canonical_conv.conv(x, w, backend="cpu"))(x))
  with pytest.raises(ValueError, match="must lie in"):
    canonical_conv.conv(x, w, ((3, 0), (0, 0)))
