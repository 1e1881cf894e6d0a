"""ProGAN: fade-in at alpha 0 and 1, parameters carried between phases, pixel norm, drift term."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import progan

WIDTHS = (16, 16, 8)


def _generator_vars(stage):
  g = progan.Generator(widths=WIDTHS, channels=1, num_classes=10)
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (3, 8)), jnp.array([0, 4, 9])
  return g, z, labels, g.init(jax.random.PRNGKey(1), z, stage, 1.0, labels)


def test_generator_fade_in_is_the_upsampled_previous_phase_at_zero_and_the_new_block_at_one():
  g, z, labels, variables = _generator_vars(stage=2)
  at_zero = g.apply(variables, z, 2, 0.0, labels)
  at_one = g.apply(variables, z, 2, 1.0, labels)
  previous = g.apply(variables, z, 1, 1.0, labels)  # the 8x8 phase with the same (shared) parameters
  chex.assert_shape((at_zero, at_one, previous), ((3, 16, 16, 1), (3, 16, 16, 1), (3, 8, 8, 1)))
  chex.assert_trees_all_close(at_zero, progan.upsample2(previous), atol=1e-5)
  halfway = g.apply(variables, z, 2, 0.5, labels)
  chex.assert_trees_all_close(halfway, 0.5 * (at_zero + at_one), atol=1e-5)
  assert not np.allclose(at_one, at_zero, atol=1e-3)


def test_phase_parameters_carry_over_and_only_the_new_block_is_added():
  g, z, labels, small = _generator_vars(stage=1)
  _, _, _, large = _generator_vars(stage=2)
  new = set(large["params"]) - set(small["params"])
  assert new == {"b16_conv0", "b16_conv1", "b16_torgb"}
  assert set(small["params"]) <= set(large["params"])
  del g, z, labels


def test_discriminator_fade_in_matches_the_previous_phase_on_downsampled_images_at_zero():
  d = progan.Discriminator(widths=WIDTHS, num_classes=10)
  images, labels = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 1)), jnp.array([1, 2, 3, 4])
  variables = d.init(jax.random.PRNGKey(1), images, 2, 1.0, labels)
  at_zero = d.apply(variables, images, 2, 0.0, labels)
  previous = d.apply(variables, progan.downsample2(images), 1, 1.0, labels)
  chex.assert_trees_all_close(at_zero, previous, atol=1e-4)
  assert not np.allclose(d.apply(variables, images, 2, 1.0, labels), at_zero, atol=1e-4)


def test_pixel_norm_gives_unit_mean_square_per_pixel():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 5)) * 7.0
  chex.assert_trees_all_close(jnp.mean(progan.pixel_norm(x) ** 2, axis=-1), jnp.ones((2, 3, 3)), atol=1e-5)


def test_drift_and_fade_schedule():
  assert float(progan.drift_penalty(jnp.array([1.0, -3.0]))) == pytest.approx(1e-3 * 5.0)
  np.testing.assert_allclose(progan.fade_alpha(jnp.array([0, 300, 600, 900]), 600), [0.0, 0.5, 1.0, 1.0])


def test_stage_outside_the_widths_is_refused():
  g = progan.Generator(widths=WIDTHS)
  with pytest.raises(ValueError, match="stage 3 outside the 3 resolutions"):
    g.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)), 3, 1.0)
