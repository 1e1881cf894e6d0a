"""Shapes, layer plans and conditioning behaviour of the GAN model families."""
import chex
import flax
import jax
import jax.numpy as jnp
import pytest

from gan_jax import models


def init(gan, image_shape, batch=3):
  # One jitted program: eager initialisation compiles each primitive of every layer shape apart.
  return jax.jit(lambda: _init(gan, image_shape, batch))()


def _init(gan, image_shape, batch):
  key = jax.random.PRNGKey(0)
  z = jax.random.normal(key, (batch, gan.z_dim))
  labels = jnp.arange(batch, dtype=jnp.int32) % gan.num_classes
  images = jax.random.uniform(key, (batch,) + image_shape)
  g_vars = gan.generator.init({"params": key}, z, labels, train=False)
  d_vars = gan.discriminator.init({"params": key, "dropout": key}, images, labels, train=False)
  return z, labels, images, g_vars, d_vars


def kernel_shapes(params):
  flat = flax.traverse_util.flatten_dict(params)
  return [v.shape for k, v in sorted(flat.items(), key=lambda kv: kv[0]) if k[-1] == "kernel"]


def test_mlp_gan_layer_plan_and_ranges():
  gan = models.build_gan("mlp_gan", image_shape=(28, 28, 1), num_classes=10)
  z, labels, images, g_vars, d_vars = init(gan, (28, 28, 1))
  assert gan.z_dim == 100
  assert kernel_shapes(g_vars["params"]) == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
  d_dense = [s for s in kernel_shapes(d_vars["params"])]
  assert d_dense == [(784, 1024), (1024, 512), (512, 256), (256, 1)]
  out = gan.generator.apply(g_vars, z, train=False)
  chex.assert_shape(out, (3, 28, 28, 1))
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  # Dropout(0.3) is active in training mode only.
  d = lambda train, seed: gan.discriminator.apply(d_vars, images, train=train, rngs={"dropout": jax.random.PRNGKey(seed)})[0]
  assert not jnp.allclose(d(True, 1), d(True, 2))
  chex.assert_trees_all_close(d(False, 1), d(False, 2))


def test_dcgan28_layer_plan():
  gan = models.build_gan("dcgan", image_shape=(28, 28, 1), num_classes=10)
  z, labels, images, g_vars, d_vars = init(gan, (28, 28, 1))
  g_kernels = kernel_shapes(g_vars["params"])
  assert (100, 7 * 7 * 256) in g_kernels
  assert {(5, 5, 256, 128), (5, 5, 128, 64), (5, 5, 64, 1)} <= set(g_kernels)
  assert "batch_stats" in g_vars
  out, _ = gan.generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
  chex.assert_shape(out, (3, 28, 28, 1))
  assert float(jnp.abs(out).max()) <= 1.0
  d_kernels = kernel_shapes(d_vars["params"])
  assert d_kernels[:2] == [(5, 5, 1, 64), (5, 5, 64, 128)]  # strided convs, no dense hidden layer
  assert (7 * 7 * 128, 1) in d_kernels
  logit, class_logits = gan.discriminator.apply(d_vars, images, train=False)
  chex.assert_shape(logit, (3,))
  assert class_logits is None


def test_dcgan32_layer_plan():
  gan = models.build_gan("dcgan", image_shape=(32, 32, 3), num_classes=10)
  z, labels, images, g_vars, d_vars = init(gan, (32, 32, 3))
  assert gan.z_dim == 128
  g_kernels = kernel_shapes(g_vars["params"])
  assert (128, 2048) in g_kernels
  assert {(4, 4, 512, 256), (4, 4, 256, 128), (4, 4, 128, 64), (4, 4, 64, 3)} <= set(g_kernels)
  out = gan.generator.apply(g_vars, z, train=False)
  chex.assert_shape(out, (3, 32, 32, 3))
  d_kernels = kernel_shapes(d_vars["params"])
  assert [k[-1] for k in d_kernels[:4]] == [64, 128, 256, 512]
  assert (2048, 1) in d_kernels  # 2x2x512 flattened


@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_cgan_outputs_depend_on_labels(conditioning):
  gan = models.build_gan("cgan", image_shape=(28, 28, 1), num_classes=10, width=8, conditioning=conditioning)
  assert gan.conditional and gan.d_takes_labels and not gan.aux_classifier
  z, labels, images, g_vars, d_vars = init(gan, (28, 28, 1))
  same_z = jnp.repeat(z[:1], 2, axis=0)
  out = gan.generator.apply(g_vars, same_z, jnp.array([0, 1]), train=False)
  assert not jnp.allclose(out[0], out[1])
  same_x = jnp.repeat(images[:1], 2, axis=0)
  logits, _ = gan.discriminator.apply(d_vars, same_x, jnp.array([0, 1]), train=False)
  assert not jnp.allclose(logits[0], logits[1])
  expected_param = "LabelPlane_0" if conditioning == "concat" else "projection"
  flat = flax.traverse_util.flatten_dict(d_vars["params"])
  assert any(expected_param in k for path in flat for k in path)


def test_acgan_discriminator_predicts_classes_without_taking_labels():
  gan = models.build_gan("acgan", image_shape=(28, 28, 1), num_classes=10, width=8)
  assert gan.conditional and gan.aux_classifier and not gan.d_takes_labels
  z, labels, images, g_vars, d_vars = init(gan, (28, 28, 1))
  logit, class_logits = gan.discriminator.apply(d_vars, images, None, train=False)
  chex.assert_shape(logit, (3,))
  chex.assert_shape(class_logits, (3, 10))


def test_wgan_gp_critic_has_no_batchnorm_and_no_dropout():
  gan = models.build_gan("wgan_gp", image_shape=(28, 28, 1), num_classes=10, width=8)
  z, labels, images, g_vars, d_vars = init(gan, (28, 28, 1))
  assert set(d_vars) == {"params"}
  run = lambda seed: gan.discriminator.apply(d_vars, images, train=True, rngs={"dropout": jax.random.PRNGKey(seed)})[0]
  chex.assert_trees_all_close(run(0), run(1))


def test_classifier_shapes():
  model = models.CNNClassifier(num_classes=10)
  x = jnp.zeros((4, 28, 28, 1))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  logits, features = model.apply(variables, x, train=False, return_features=True)
  chex.assert_shape(logits, (4, 10))
  chex.assert_shape(features, (4, 128))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="bigan"), "Unknown model 'bigan'"),
    (dict(name="dcgan", image_shape=(48, 48, 3)), "28x28, 32x32, 64x64, 128x128 images, got 48x48"),
    (dict(name="cgan", conditioning="film"), "Unknown conditioning 'film'"),
])
def test_build_gan_errors(kwargs, message):
  args = dict(image_shape=(28, 28, 1), num_classes=10) | kwargs
  with pytest.raises(ValueError, match=message):
    models.build_gan(**args)


@pytest.mark.parametrize("size, d_widths", [(64, [4, 8, 16, 32]), (128, [4, 8, 16, 32, 32])])
def test_dcgan_families_at_64_and_128_px_for_image_folders(size, d_widths):
  gan = models.build_gan("cgan", image_shape=(size, size, 3), num_classes=3, width=4)
  z, labels, images, g_vars, d_vars = init(gan, (size, size, 3), batch=2)
  chex.assert_shape(gan.generator.apply(g_vars, z, labels, train=False), (2, size, size, 3))
  logits, _ = gan.discriminator.apply(d_vars, images, labels, train=False)
  chex.assert_shape(logits, (2,))
  # The generator starts from a 4x4 stem; the discriminator's widths double up to 8w.
  assert [k[-1] for k in kernel_shapes(d_vars["params"])[:len(d_widths)]] == d_widths
