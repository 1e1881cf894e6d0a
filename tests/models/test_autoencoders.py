"""Autoencoder families: shapes, the reparameterisation gradient, conditional decoding, the IWAE bound.

Train steps are exercised end to end by the smoke runs in test_vae_loop.py.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import autoencoders
from gan_jax.train import vae_step

IMAGE_SHAPE = (28, 28, 1)
LATENT = 3
BATCH = 4


def make_model(name):
  return autoencoders.build_model(name, image_shape=IMAGE_SHAPE, num_classes=10, latent_dim=LATENT, width=4,
                                  hidden=16)


@functools.lru_cache(maxsize=None)
def build(name):
  """Model and parameters, built once per module; jitted because eager ops each compile on a cold cache."""
  model = make_model(name)
  params, d_params = jax.jit(model.init)(vae_step.make_key(0))
  return model, params, d_params


def batch(seed=0):
  images = np.random.default_rng(seed).random((BATCH,) + IMAGE_SHAPE, np.float32)
  return jnp.asarray(images), jnp.arange(BATCH, dtype=jnp.int32)


@pytest.mark.parametrize("name", autoencoders.AUTOENCODER_MODELS)
def test_shapes(name):
  model = make_model(name)
  params, d_params = jax.eval_shape(model.init, vae_step.make_key(0))  # shapes only: nothing compiles
  images, labels = batch()
  code = jax.eval_shape(model.encode, params, images, labels)
  z = jnp.zeros((BATCH, LATENT))
  if model.variational:
    chex.assert_shape(code, [(BATCH, LATENT), (BATCH, LATENT)])
    chex.assert_shape(jax.eval_shape(model.generate, params, labels, vae_step.make_key(1)), (BATCH,) + IMAGE_SHAPE)
  else:
    chex.assert_shape(code, (BATCH, LATENT))
    with pytest.raises(ValueError, match="no prior"):
      model.generate(params, labels, vae_step.make_key(1))
  chex.assert_shape(jax.eval_shape(model.decode, params, z, labels), (BATCH,) + IMAGE_SHAPE)
  if name == "aae":
    chex.assert_shape(jax.eval_shape(model.discriminate, d_params, images), (BATCH,))
  else:
    assert d_params == {}
  chex.assert_shape(jax.eval_shape(functools.partial(vae_step.reconstruct, model), params, images, labels),
                    images.shape)


def test_vae_gradient_reaches_both_encoder_heads_through_the_sample():
  model, params, _ = build("vae")
  images, labels = batch()
  cfg = vae_step.StepConfig()

  # Only the reconstruction term: the KL (tested in closed form elsewhere) would reach
  # both heads directly; here the gradient can reach them only through
  # z = mean + exp(logvar / 2) * eps.
  def reconstruction_loss(p):
    return jnp.mean(vae_step.vae_terms(model, p, images, labels, vae_step.make_key(2), cfg)[0])

  grads = jax.jit(jax.grad(reconstruction_loss))(params)["encoder"]
  for head in ("mean", "logvar"):
    assert float(jnp.abs(grads[head]["kernel"]).sum()) > 0, head
    assert np.isfinite(grads[head]["kernel"]).all()


def test_reparameterization_derivatives():
  mean, logvar = jnp.array([0.5, -1.0]), jnp.array([0.0, jnp.log(4.0)])
  key = vae_step.make_key(3)
  eps = jax.random.normal(key, mean.shape)
  d_mean = jax.jacobian(lambda m: autoencoders.reparameterize(m, logvar, key))(mean)
  d_logvar = jax.jacobian(lambda lv: autoencoders.reparameterize(mean, lv, key))(logvar)
  chex.assert_trees_all_close(d_mean, jnp.eye(2))
  chex.assert_trees_all_close(d_logvar, jnp.diag(0.5 * jnp.exp(0.5 * logvar) * eps), rtol=1e-6)


def test_cvae_decodes_classes_differently():
  model, params, _ = build("cvae")
  z = jnp.zeros((2, LATENT))
  images = jax.jit(model.decode)(params, z, jnp.array([0, 1]))
  assert float(jnp.abs(images[0] - images[1]).max()) > 1e-4
  # The same noise key with different labels: generate() follows the label too.
  samples = jax.jit(model.generate)(params, jnp.array([3, 7]), vae_step.make_key(4))
  chex.assert_shape(samples, (2,) + IMAGE_SHAPE)
  assert float(jnp.abs(samples[0] - samples[1]).max()) > 1e-4
  with pytest.raises(ValueError, match="conditional"):
    model.decode(params, z, None)


def test_unknown_model_and_likelihood_rejected():
  with pytest.raises(ValueError, match="Unknown model 'gan'"):
    autoencoders.build_model("gan", image_shape=IMAGE_SHAPE, num_classes=10, latent_dim=2)
  with pytest.raises(ValueError, match="Unknown likelihood"):
    vae_step.StepConfig(likelihood="laplace")


def test_iwae_bound_is_tighter_than_elbo():
  model, params, _ = build("vae")
  images, labels = batch()
  state = vae_step.AETrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=None, d_params={},
                                d_opt_state=None, rng=jax.random.key_data(vae_step.make_key(0)))
  metrics = jax.jit(lambda s, x, y, k: vae_step.per_example_metrics(model, vae_step.StepConfig(), s, x, y, k,
                                                                     num_samples=64, iwae_samples=64))(
                                                                         state, images, labels, vae_step.make_key(6))
  assert np.all(np.asarray(metrics["iwae_nll"]) <= np.asarray(metrics["neg_elbo"]) + 1e-3)
  chex.assert_trees_all_close(metrics["neg_elbo"], metrics["recon"] + metrics["kl"], rtol=1e-6)


@pytest.mark.parametrize("size, stages", [(32, 2), (64, 3), (128, 4)])
def test_autoencoders_add_a_stage_per_doubling_of_the_image_side(size, stages):
  model = autoencoders.build_model("cvae", image_shape=(size, size, 3), num_classes=3, latent_dim=2, width=2, hidden=8)
  params, _ = jax.jit(model.init)(vae_step.make_key(0))
  encoder_convs = [k for k in params["encoder"] if k.startswith("Conv")]
  assert len(encoder_convs) == stages
  images = jax.jit(model.generate)(params, jnp.array([0, 2]), jax.random.PRNGKey(1))
  chex.assert_shape(images, (2, size, size, 3))
  with pytest.raises(ValueError, match="support 28x28, 32x32, 64x64, 128x128 images, got 48x48"):
    autoencoders.build_model("vae", image_shape=(48, 48, 3), num_classes=3, latent_dim=2)
