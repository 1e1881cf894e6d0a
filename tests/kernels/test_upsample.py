"""The sub-pixel up-sampling layer computes exactly what flax.linen.ConvTranspose computes."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from gan_jax.kernels import upsample


@pytest.mark.parametrize("kernel_size, stride", [(5, 2), (4, 2), (3, 2), (2, 2), (1, 2), (6, 2), (3, 3), (5, 1)])
@pytest.mark.parametrize("impl", ["subpixel", "transpose", "phase_im2col", "auto"])
def test_upconv_equals_flax_conv_transpose(kernel_size, stride, impl):
  key = jax.random.PRNGKey(kernel_size * 10 + stride)
  x = jax.random.normal(key, (2, 7, 5, 3))
  reference = nn.ConvTranspose(4, (kernel_size, kernel_size), strides=(stride, stride), padding="SAME")
  variables = reference.init(key, x)
  layer = upsample.UpConv(4, kernel_size, stride, impl=impl)
  # Same parameter tree: a checkpoint of one loads into the other.
  chex.assert_trees_all_equal_shapes(layer.init(key, x), variables)
  expected = reference.apply(variables, x)
  chex.assert_shape(expected, (2, 7 * stride, 5 * stride, 4))
  chex.assert_trees_all_close(layer.apply(variables, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl, kernel_size, stride", [("subpixel", 5, 2), ("phase_im2col", 5, 2),
                                                       ("phase_im2col", 4, 2), ("phase_im2col", 3, 3)])
def test_gradients_match_flax_conv_transpose(impl, kernel_size, stride):
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (3, 7, 5, 8))
  reference = nn.ConvTranspose(5, (kernel_size, kernel_size), strides=(stride, stride), padding="SAME")
  variables = reference.init(key, x)
  target = jax.random.normal(jax.random.PRNGKey(1), (3, 7 * stride, 5 * stride, 5))
  loss = lambda apply: lambda v, x: jnp.mean((apply(v, x) - target) ** 2)
  grad = lambda apply: jax.grad(loss(apply), argnums=(0, 1))(variables, x)
  chex.assert_trees_all_close(grad(upsample.UpConv(5, kernel_size, stride, impl=impl).apply), grad(reference.apply),
                              atol=1e-5, rtol=1e-4)


def test_phase_taps_cover_every_kernel_tap_once():
  for k, s in [(5, 2), (4, 2), (3, 3), (7, 2)]:
    taps, lo, hi = upsample.phase_taps(k, s)
    used = sorted(t for t in taps.ravel() if t >= 0)
    assert used == list(range(k)), (k, s, taps)
    assert taps.shape == (hi - lo + 1, s)


def test_unknown_impl_is_an_error():
  with pytest.raises(ValueError, match="Unknown upsample_impl 'fft'.*subpixel"):
    upsample.UpConv(4, 5, 2, impl="fft").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 2)))


@pytest.mark.parametrize("side, form", [(1, "dense"), (2, "phase"), (3, "phase"), (4, "phase"), (5, "subpixel"),
                                        (8, "subpixel")])
def test_auto_takes_matmuls_on_tiny_inputs_and_subpixel_from_5x5(side, form):
  # On CPU a 1x1 input becomes one matmul and 2x2-4x4 inputs one matmul per output phase, with no
  # gather of the kernel: no convolution is left in the program.
  x = jnp.ones((2, side, side, 3))
  layer = upsample.UpConv(4, 4, 2, impl="auto")
  variables = layer.init(jax.random.PRNGKey(0), x)
  eqns = jax.make_jaxpr(layer.apply)(variables, x).jaxpr.eqns
  names = [e.primitive.name for e in eqns]
  convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
  if form == "subpixel":
    assert len(convs) == 1 and tuple(convs[0].params["lhs_dilation"]) == (1, 1)
    return
  assert not convs and "gather" not in names
  if form == "phase":
    assert names.count("dot_general") == 4  # one per output phase (2 x 2)
  else:
    assert "dot_general" in names


def test_phase_im2col_in_bfloat16_matches_subpixel():
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(key, (2, 4, 4, 16))
  variables = upsample.UpConv(8, 4, 2).init(key, x)
  run = lambda impl: upsample.UpConv(8, 4, 2, impl=impl, dtype=jnp.bfloat16).apply(variables, x)
  got, expected = run("phase_im2col"), run("subpixel")
  assert got.dtype == jnp.bfloat16
  chex.assert_trees_all_close(got.astype(jnp.float32), expected.astype(jnp.float32), atol=0.05, rtol=0.05)
