"""Autoencoder / VAE losses: closed-form KL against hand values and Monte Carlo, stable likelihoods."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses


class GaussianKLTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_standard_normal_posterior_has_zero_kl(self):
    kl = self.variant(losses.gaussian_kl)(jnp.zeros((3, 5)), jnp.zeros((3, 5)))
    chex.assert_shape(kl, (3,))
    chex.assert_trees_all_close(kl, jnp.zeros(3), atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_values(self):
    # mean 1, var 1: 0.5 * (1 + 1 - 1 - 0) = 0.5 per dimension.
    # mean 0, var 2: 0.5 * (0 + 2 - 1 - ln 2) per dimension.
    mean = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    logvar = jnp.array([[0.0] * 4, [math.log(2.0)] * 4])
    expected = jnp.array([4 * 0.5, 4 * 0.5 * (1.0 - math.log(2.0))])
    chex.assert_trees_all_close(self.variant(losses.gaussian_kl)(mean, logvar), expected, rtol=1e-6)

  def test_matches_monte_carlo_estimate(self):
    rng = np.random.default_rng(0)
    mean = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    logvar = jnp.asarray(0.5 * rng.standard_normal((4, 3)), jnp.float32)

    @jax.jit
    def monte_carlo(key):
      std = jnp.exp(0.5 * logvar)
      z = mean + std * jax.random.normal(key, (200_000, 4, 3))
      log_q = jax.scipy.stats.norm.logpdf(z, mean, std).sum(-1)
      log_p = jax.scipy.stats.norm.logpdf(z).sum(-1)
      return jnp.mean(log_q - log_p, axis=0)

    monte_carlo = monte_carlo(jax.random.PRNGKey(0))
    chex.assert_trees_all_close(losses.gaussian_kl(mean, logvar), monte_carlo, atol=0.02, rtol=0.01)

  def test_kl_is_nonnegative_and_finite_for_small_logvar(self):
    logvar = jnp.array([[-1e-6, 1e-6, -30.0, 20.0]])
    kl = losses.gaussian_kl(jnp.zeros_like(logvar), logvar)
    assert np.isfinite(kl).all() and float(kl[0]) > 0


def test_bernoulli_loss_equals_binary_cross_entropy():
  logits = jnp.array([[-2.0, 0.0, 3.0]])
  x = jnp.array([[0.0, 0.3, 1.0]])
  p = jax.nn.sigmoid(logits)
  expected = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p), axis=-1)
  chex.assert_trees_all_close(losses.bernoulli_reconstruction_loss(logits, x), expected, rtol=1e-6)
  # Zero logits: every pixel costs ln 2.
  images = jnp.full((2, 28, 28, 1), 0.7)
  chex.assert_trees_all_close(losses.bernoulli_reconstruction_loss(jnp.zeros_like(images), images),
                              jnp.full((2,), 784 * math.log(2.0)), rtol=1e-6)


@pytest.mark.parametrize("logit", [-1e4, -100.0, 100.0, 1e4])
def test_bernoulli_loss_finite_for_extreme_logits(logit):
  logits = jnp.full((2, 4), logit)
  x = jnp.array([[0.0, 1.0, 0.5, 0.2], [1.0, 1.0, 0.0, 0.0]])
  loss, grad = jax.value_and_grad(lambda l: jnp.sum(losses.bernoulli_reconstruction_loss(l, x)))(logits)
  assert np.isfinite(loss) and np.isfinite(grad).all()
  # A confidently right pixel costs ~0; a confidently wrong one ~|logit|.
  right = jnp.full((1, 1), 1.0 if logit > 0 else 0.0)
  assert float(losses.bernoulli_reconstruction_loss(jnp.full((1, 1), logit), right)[0]) < 1e-6
  wrong = 1.0 - right
  chex.assert_trees_all_close(losses.bernoulli_reconstruction_loss(jnp.full((1, 1), logit), wrong),
                              jnp.array([abs(logit)]), rtol=1e-6)


def test_gaussian_loss_is_negative_log_density():
  rng = np.random.default_rng(1)
  x_hat, x = rng.random((3, 5, 5, 1), np.float32), rng.random((3, 5, 5, 1), np.float32)
  log_scale = math.log(0.1)
  expected = (0.5 * ((x - x_hat) / 0.1) ** 2 + math.log(0.1 * math.sqrt(2 * math.pi))).reshape(3, -1).sum(-1)
  chex.assert_trees_all_close(losses.gaussian_reconstruction_loss(x_hat, x, log_scale), expected, rtol=1e-5)


def test_squared_error_per_example():
  x = jnp.zeros((2, 2, 2, 1))
  x_hat = x.at[1].set(0.5)
  chex.assert_trees_all_close(losses.squared_error(x_hat, x), jnp.array([0.0, 4 * 0.25]))
