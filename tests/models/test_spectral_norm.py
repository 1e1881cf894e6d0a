"""Spectral normalisation: unit top singular value, scale invariance of the discriminator, training step."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import models
from gan_jax.models import layers
from gan_jax.train import gan_step


@pytest.mark.parametrize("shape", [(64, 16), (5, 5, 8, 32), (4, 4, 3, 2)])
def test_normalised_kernel_has_unit_spectral_norm(shape):
  kernel = jax.random.normal(jax.random.PRNGKey(1), shape) * 3.0
  normalised = layers.spectral_normalize(kernel)
  chex.assert_shape(normalised, shape)
  sigma = np.linalg.svd(np.asarray(normalised).reshape(-1, shape[-1]), compute_uv=False)[0]
  # Power iteration underestimates sigma: the result is at least 1, and close to it.
  assert 1.0 - 1e-5 <= sigma <= 1.01


def _scale_kernels(params, factor):
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x * factor if jax.tree_util.keystr(path).endswith("['kernel']") or
      jax.tree_util.keystr(path).endswith("['embedding']") else x, params)


@pytest.mark.parametrize("name, conditioning", [("dcgan", "none"), ("cgan", "projection"), ("acgan", "none")])
def test_spectrally_normalised_discriminator_ignores_the_kernel_scale(name, conditioning):
  gan = models.build_gan(name, image_shape=(28, 28, 1), num_classes=10, width=8, conditioning=conditioning,
                         spectral_norm=True)
  images = jax.random.uniform(jax.random.PRNGKey(0), (4, 28, 28, 1), minval=-1, maxval=1)
  labels = jnp.arange(4)
  params = gan.discriminator.init(jax.random.PRNGKey(2), images, labels, train=False)["params"]
  apply = lambda p: gan.discriminator.apply({"params": p}, images, labels, train=False)
  logit, class_logits = apply(params)
  scaled_logit, scaled_class_logits = apply(_scale_kernels(params, 7.0))
  np.testing.assert_allclose(scaled_logit, logit, rtol=1e-4, atol=1e-5)
  if class_logits is not None:
    np.testing.assert_allclose(scaled_class_logits, class_logits, rtol=1e-4, atol=1e-5)
  # Without the normalisation the same scaling changes the output: the test can fail.
  plain = models.build_gan(name, image_shape=(28, 28, 1), num_classes=10, width=8, conditioning=conditioning)
  plain_params = plain.discriminator.init(jax.random.PRNGKey(2), images, labels, train=False)["params"]
  plain_apply = lambda p: plain.discriminator.apply({"params": p}, images, labels, train=False)[0]
  assert not np.allclose(plain_apply(_scale_kernels(plain_params, 7.0)), plain_apply(plain_params), atol=1e-3)


def test_spectral_norm_keeps_parameter_shapes_and_trains():
  plain = models.build_gan("cgan", image_shape=(28, 28, 1), num_classes=10, width=8, conditioning="projection")
  gan = models.build_gan("cgan", image_shape=(28, 28, 1), num_classes=10, width=8, conditioning="projection",
                         spectral_norm=True)
  tx = gan_step.make_optimizer(2e-4, 0.5, 0.999)
  state = jax.jit(lambda k: gan_step.init_train_state(gan, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  plain_state = jax.jit(lambda k: gan_step.init_train_state(plain, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  shapes = lambda tree: sorted(x.shape for x in jax.tree.leaves(tree))
  assert shapes(state.d_params) == shapes(plain_state.d_params)
  step = jax.jit(gan_step.make_train_step(gan, gan_step.StepConfig(loss="hinge"), tx, tx))
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (1, 8, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, (1, 8)).astype(np.int32)}
  new_state, metrics = step(state, batch)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["nonfinite"]) == 0.0
  changed = jax.tree_util.tree_map_with_path(
      lambda path, a, b: "kernel" not in jax.tree_util.keystr(path) or not np.allclose(a, b),
      new_state.d_params, state.d_params)
  assert all(jax.tree.leaves(changed))


def test_mlp_gan_refuses_spectral_norm():
  with pytest.raises(ValueError, match="spectral_norm.*mlp_gan"):
    models.build_gan("mlp_gan", image_shape=(28, 28, 1), num_classes=10, spectral_norm=True)
