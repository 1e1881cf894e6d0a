"""ADA's transformations: identity at p = 0, exact geometry, differentiability, the policy check."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import ada


def images(batch=8, side=12, channels=3, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (batch, side, side, channels), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("name", list(ada.TRANSFORMS))
def test_each_transform_is_the_identity_at_p_zero_and_changes_images_at_p_one(name):
  x = images()
  chex.assert_trees_all_equal(ada.TRANSFORMS[name](x, jax.random.PRNGKey(1), jnp.float32(0.0)), x)
  changed = ada.TRANSFORMS[name](x, jax.random.PRNGKey(1), jnp.float32(1.0))
  chex.assert_shape(changed, x.shape)
  assert np.abs(np.asarray(changed - x)).reshape(8, -1).max(axis=1).min() > 1e-3  # every image changed


def test_probability_selects_a_share_of_the_images():
  x = images(batch=400, side=6, channels=1)
  out = ada.cutout(x, jax.random.PRNGKey(3), jnp.float32(0.3))
  changed = np.mean(np.abs(np.asarray(out - x)).reshape(400, -1).max(axis=1) > 0)
  assert abs(changed - 0.3) < 0.08  # 3.5 standard errors of a binomial share


def test_rotation_by_a_quarter_turn_equals_rot90_and_scale_one_angle_zero_is_identity():
  x = images(batch=1, side=9)[0]
  chex.assert_trees_all_close(ada._rotate_scale(x, jnp.float32(1.0), jnp.float32(0.0)), x, atol=1e-6)
  turned = ada._rotate_scale(x, jnp.float32(1.0), jnp.float32(math.pi / 2))
  # Rows grow downwards, so a positive angle turns the picture clockwise as displayed.
  chex.assert_trees_all_close(turned, jnp.rot90(x, k=-1, axes=(0, 1)), atol=1e-5)


def test_scaling_up_by_two_reads_the_centre_at_half_spacing():
  # Output pixel o reads input (o - c) / 2 + c: at the centre pixel of an odd image both agree.
  x = images(batch=1, side=9, channels=1)[0]
  zoomed = ada._rotate_scale(x, jnp.float32(2.0), jnp.float32(0.0))
  chex.assert_trees_all_close(zoomed[4, 4], x[4, 4], atol=1e-6)
  chex.assert_trees_all_close(zoomed[4, 6], x[4, 5], atol=1e-6)
  chex.assert_trees_all_close(zoomed[4, 5], (x[4, 4] + x[4, 5]) / 2, atol=1e-6)


def test_pipeline_is_differentiable_in_the_images():
  x = images(batch=4)
  grad = jax.grad(lambda im: jnp.sum(ada.ada_augment(im, jax.random.PRNGKey(2), jnp.float32(0.7)) ** 2))(x)
  assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).sum() > 0


def test_policy_names_are_checked():
  assert ada.parse_policy("translation, color") == ("translation", "color")
  with pytest.raises(ValueError, match="Unknown ADA policy 'translation,xflip'.*geometric"):
    ada.parse_policy("translation,xflip")
  with pytest.raises(ValueError, match="Unknown ADA policy ''"):
    ada.parse_policy("")
