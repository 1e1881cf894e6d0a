"""StyleGAN2 as a GAN of the project: shapes at 28 and 32 px, sampling determinism, w_avg, truncation, padding."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.models import stylegan2_gan


@pytest.mark.parametrize("shape, network", [((28, 28, 1), 32), ((32, 32, 3), 32), ((16, 16, 1), 16)])
def test_generator_and_discriminator_work_at_the_data_size(shape, network):
  gan = models.build_gan("stylegan2", image_shape=shape, num_classes=10, width=4)
  assert stylegan2_gan.network_size(shape[0]) == network
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (4, gan.z_dim)), jnp.arange(4)
  g_vars = gan.generator.init(jax.random.PRNGKey(1), z, labels)
  fake = gan.generator.apply(g_vars, z, labels)
  chex.assert_shape(fake, (4,) + shape)
  d_vars = gan.discriminator.init(jax.random.PRNGKey(2), fake, labels)
  logits, class_logits = gan.discriminator.apply(d_vars, fake, labels)
  chex.assert_shape(logits, (4,))
  assert class_logits is None and gan.conditional and gan.d_takes_labels


def test_sampling_is_deterministic_and_training_updates_w_avg_and_draws_noise():
  gan = models.build_gan("stylegan2", image_shape=(28, 28, 1), num_classes=10, width=4)
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (4, gan.z_dim)), jnp.arange(4)
  g_vars = gan.generator.init(jax.random.PRNGKey(1), z, labels)
  chex.assert_trees_all_equal(g_vars["batch_stats"]["w_avg"], jnp.zeros(gan.z_dim))
  chex.assert_trees_all_equal(gan.generator.apply(g_vars, z, labels), gan.generator.apply(g_vars, z, labels))
  # Give the noise inputs a strength so that the noise stream shows in the images.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.ones_like(p) if "noise_strength" in jax.tree_util.keystr(path) else p, g_vars["params"])
  variables = {"params": params, "batch_stats": g_vars["batch_stats"]}
  train = lambda key: gan.generator.apply(variables, z, labels, train=True, rngs={"noise": key},
                                          mutable=["batch_stats"])
  a, stats = train(jax.random.PRNGKey(5))
  b, _ = train(jax.random.PRNGKey(6))
  assert not np.allclose(a, b)
  assert np.abs(np.asarray(stats["batch_stats"]["w_avg"])).max() > 0


def test_truncation_psi_zero_maps_every_z_of_a_class_to_one_image():
  gan = models.build_gan("stylegan2", image_shape=(28, 28, 1), num_classes=10, width=4, truncation_psi=0.0)
  z, labels = jax.random.normal(jax.random.PRNGKey(0), (3, gan.z_dim)), jnp.array([2, 2, 2])
  variables = gan.generator.init(jax.random.PRNGKey(1), z, labels)
  variables = {**variables, "batch_stats": {"w_avg": jnp.linspace(-1, 1, gan.z_dim)}}
  fake = gan.generator.apply(variables, z, labels)
  chex.assert_trees_all_close(fake[0], fake[1], atol=1e-6)
  chex.assert_trees_all_close(fake[0], fake[2], atol=1e-6)


def test_pad_and_crop_are_inverse_and_pad_with_the_background():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 1))
  padded = stylegan2_gan.center_pad(x, 32, -1.0)
  chex.assert_shape(padded, (2, 32, 32, 1))
  assert float(padded[0, 0, 0, 0]) == -1.0 and float(padded[0, 31, 31, 0]) == -1.0
  chex.assert_trees_all_equal(stylegan2_gan.center_crop(padded, 28), x)


def test_stylegan2_refuses_spectral_norm_and_non_square_images():
  with pytest.raises(ValueError, match="R1 instead"):
    models.build_gan("stylegan2", image_shape=(28, 28, 1), num_classes=10, spectral_norm=True)
  with pytest.raises(ValueError, match="square"):
    models.build_gan("stylegan2", image_shape=(28, 32, 1), num_classes=10)
