"""StyleGAN2's blocks: modulated convolution, demodulation, equalised learning rate, truncation, mixing, R1, ADA."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import augment
from gan_jax import losses
from gan_jax.models import stylegan2


def test_modulated_convolution_equals_a_per_sample_convolution_with_the_scaled_kernel():
  kx, kw, ks = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (3, 6, 5, 4))
  weight = jax.random.normal(kw, (3, 3, 4, 7))
  styles = jax.random.uniform(ks, (3, 4), minval=0.5, maxval=2.0)
  for demodulate in (False, True):
    out = stylegan2.modulated_conv2d(x, weight, styles, demodulate=demodulate)
    for i in range(3):
      kernel = weight * styles[i][None, None, :, None]
      if demodulate:
        kernel = kernel / jnp.sqrt(jnp.sum(kernel**2, axis=(0, 1, 2), keepdims=True) + 1e-8)
      expected = jax.lax.conv_general_dilated(x[i:i + 1], kernel, (1, 1), "SAME",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
      chex.assert_trees_all_close(out[i], expected, atol=1e-4, rtol=1e-4)


def test_demodulation_keeps_unit_variance():
  # i.i.d. unit-variance inputs: each demodulated output channel has unit variance, whatever the style.
  kx, kw, ks = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(kx, (4, 64, 64, 16))
  styles = jax.random.uniform(ks, (4, 16), minval=0.1, maxval=5.0)
  out = stylegan2.modulated_conv2d(x, jax.random.normal(kw, (3, 3, 16, 8)), styles)
  # Interior pixels only: 'SAME' padding lowers the variance at the border.
  variance = jnp.var(out[:, 1:-1, 1:-1], axis=(1, 2))
  chex.assert_trees_all_close(variance, jnp.ones_like(variance), atol=0.1)  # ~4 standard errors


@pytest.mark.parametrize("lr_multiplier", [1.0, 0.01])
def test_equalized_dense_is_a_plain_layer_with_prescaled_weights(lr_multiplier):
  layer = stylegan2.EqualizedDense(64, lr_multiplier=lr_multiplier, bias_init=1.0)
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 256))
  params = layer.init(jax.random.PRNGKey(1), x)["params"]
  # Stored weights are N(0, 1 / lr_mul^2); the forward pass uses W * lr_mul / sqrt(fan_in).
  assert float(jnp.std(params["kernel"]) * lr_multiplier) == pytest.approx(1.0, abs=0.03)
  plain = x @ (params["kernel"] * lr_multiplier / math.sqrt(256)) + params["bias"] * lr_multiplier
  chex.assert_trees_all_close(layer.apply({"params": params}, x), plain, atol=1e-5)
  chex.assert_trees_all_close(params["bias"] * lr_multiplier, jnp.ones(64), atol=1e-6)


def test_equalized_conv_has_unit_normal_weights_and_scales_at_run_time():
  layer = stylegan2.EqualizedConv(32, 3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 64))
  params = layer.init(jax.random.PRNGKey(1), x)["params"]
  assert float(jnp.std(params["kernel"])) == pytest.approx(1.0, abs=0.03)
  expected = jax.lax.conv_general_dilated(x, params["kernel"] / math.sqrt(9 * 64), (1, 1), "SAME",
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))
  chex.assert_trees_all_close(layer.apply({"params": params}, x), expected, atol=1e-5)


def test_truncation_with_psi_zero_gives_the_average_w_for_every_z():
  mapping = stylegan2.MappingNetwork(w_dim=16, num_layers=2, num_classes=10)
  z = jax.random.normal(jax.random.PRNGKey(0), (6, 16))
  labels = jnp.arange(6)
  w = mapping.apply(mapping.init(jax.random.PRNGKey(1), z, labels), z, labels)
  w_avg = jnp.linspace(-1.0, 1.0, 16)
  chex.assert_trees_all_close(stylegan2.truncate(w, w_avg, 0.0), jnp.broadcast_to(w_avg, w.shape), atol=1e-6)
  chex.assert_trees_all_close(stylegan2.truncate(w, w_avg, 1.0), w, atol=1e-6)
  assert len({tuple(np.round(np.asarray(r), 5)) for r in w}) == 6  # distinct w before truncation


def test_mapping_network_conditions_on_the_label():
  mapping = stylegan2.MappingNetwork(w_dim=16, num_layers=2, num_classes=10)
  z = jnp.tile(jax.random.normal(jax.random.PRNGKey(0), (1, 16)), (2, 1))
  params = mapping.init(jax.random.PRNGKey(1), z, jnp.array([0, 1]))
  w = mapping.apply(params, z, jnp.array([3, 4]))
  assert not np.allclose(w[0], w[1])


def test_style_mixing_uses_w1_below_the_crossover_and_w2_from_it_on():
  w1, w2 = jnp.zeros((2, 4)), jnp.ones((2, 4))
  mixed = stylegan2.mix_styles(w1, w2, num_layers=5, crossover=jnp.array([2, 5]))
  np.testing.assert_array_equal(mixed[0, :, 0], [0, 0, 1, 1, 1])
  np.testing.assert_array_equal(mixed[1, :, 0], [0, 0, 0, 0, 0])


def test_lazy_r1_equals_the_analytic_penalty_of_a_linear_critic():
  # D(x) = <a, x> has input gradient a everywhere: R1 = gamma / 2 * ||a||^2, times the interval.
  a = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 2))
  critic = lambda x: jnp.sum(x * a, axis=(1, 2, 3))
  real = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 3, 2))
  expected = 0.5 * 10.0 * float(jnp.sum(a**2))
  assert float(losses.r1_penalty(critic, real, gamma=10.0)) == pytest.approx(expected, rel=1e-5)
  assert float(losses.r1_penalty(critic, real, gamma=10.0, interval=16)) == pytest.approx(16 * expected, rel=1e-5)


@pytest.mark.parametrize("p, r_t, expected", [(0.3, 0.9, 0.3 + 0.2), (0.3, 0.1, 0.3 - 0.2), (0.95, 1.0, 1.0),
                                              (0.05, -1.0, 0.0), (0.4, 0.6, 0.4)])
def test_ada_probability_follows_the_overfitting_heuristic_and_stays_in_zero_one(p, r_t, expected):
  new = augment.ada_update(jnp.float32(p), jnp.float32(r_t), target=0.6, images_seen=100_000, adjust_images=500_000)
  assert float(new) == pytest.approx(expected, abs=1e-6)


def test_resolutions_of_a_32px_generator():
  assert list(stylegan2.resolutions(32)) == [4, 8, 16, 32]
  with pytest.raises(ValueError, match="image size 28 is not 4 times a power of two"):
    stylegan2.resolutions(28)


def test_generator_and_discriminator_shapes_and_conditioning():
  synthesis = stylegan2.SynthesisNetwork(image_size=16, channels=1, widths=(16, 16, 8))
  mapping = stylegan2.MappingNetwork(w_dim=16, num_layers=2, num_classes=10)
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (4, 16)), jnp.array([0, 1, 2, 3])
  # Jitted: op by op, these inits and applies compile some 140 one-op programs.
  w = jax.jit(mapping.apply)(jax.jit(mapping.init)(jax.random.PRNGKey(1), z, labels), z, labels)
  ws = stylegan2.broadcast_styles(w, synthesis.num_ws)
  g_vars = jax.jit(synthesis.init)(jax.random.PRNGKey(2), ws, jax.random.PRNGKey(3))
  synthesize = jax.jit(synthesis.apply)
  images = synthesize(g_vars, ws, jax.random.PRNGKey(3))
  chex.assert_shape(images, (4, 16, 16, 1))
  # Noise strengths start at zero: the noise key does not matter until they are learned.
  chex.assert_trees_all_close(synthesize(g_vars, ws, jax.random.PRNGKey(9)), images)
  critic = stylegan2.ResidualDiscriminator(image_size=16, widths=(8, 16, 16), num_classes=10)
  d_vars = jax.jit(critic.init)(jax.random.PRNGKey(4), images, labels)
  judge = jax.jit(critic.apply)
  logits = judge(d_vars, images, labels)
  chex.assert_shape(logits, (4,))
  assert not np.allclose(logits, judge(d_vars, images, (labels + 1) % 10))


def test_minibatch_stddev_appends_the_group_spread():
  x = jnp.stack([jnp.zeros((2, 2, 3)), jnp.full((2, 2, 3), 2.0)])  # a group of 2: std 1 everywhere
  out = stylegan2.minibatch_stddev(x, group_size=2)
  chex.assert_shape(out, (2, 2, 2, 4))
  chex.assert_trees_all_close(out[..., 3], jnp.ones((2, 2, 2)), atol=1e-4)
  with pytest.raises(ValueError, match="batch 3 is not divisible"):
    stylegan2.minibatch_stddev(jnp.zeros((3, 2, 2, 1)), group_size=2)


def test_minibatch_stddev_groups_never_mix_the_halves_of_reals_and_fakes():
  reals = jax.random.normal(jax.random.PRNGKey(0), (8, 2, 2, 3))
  fakes = jnp.zeros((8, 2, 2, 3))  # no spread at all
  out = stylegan2.minibatch_stddev(jnp.concatenate([reals, fakes]), group_size=4)
  chex.assert_trees_all_close(out[8:, ..., 3], jnp.full((8, 2, 2), 1e-4), atol=1e-6)  # sqrt(0 + 1e-8)
  chex.assert_trees_all_close(out[:8], stylegan2.minibatch_stddev(reals, group_size=4))
  assert float(out[:8, ..., 3].min()) > 0.1
