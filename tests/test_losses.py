"""Loss functions against values worked out by hand, their gradients, and saturated limits."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses

REAL = jnp.array([0.0, 2.0])
FAKE = jnp.array([-1.0, 3.0])


def softplus(x):
  return math.log1p(math.exp(x))


def sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_minimax_discriminator_value():
  expected = (softplus(-0.0) + softplus(-2.0)) / 2 + (softplus(-1.0) + softplus(3.0)) / 2
  chex.assert_trees_all_close(losses.minimax_discriminator_loss(REAL, FAKE), expected, rtol=1e-6)
  # ln 2 + ln 2 at D = 1/2 everywhere: the value of the game at equilibrium is -log 4.
  chex.assert_trees_all_close(losses.minimax_discriminator_loss(jnp.zeros(4), jnp.zeros(4)), math.log(4.0),
                              rtol=1e-6)


def test_minimax_generator_is_log_one_minus_d():
  expected = (math.log(1 - sigmoid(-1.0)) + math.log(1 - sigmoid(3.0))) / 2
  chex.assert_trees_all_close(losses.minimax_generator_loss(FAKE), expected, rtol=1e-6)


def test_non_saturating_generator_value():
  expected = (softplus(1.0) + softplus(-3.0)) / 2
  chex.assert_trees_all_close(losses.non_saturating_generator_loss(FAKE), expected, rtol=1e-6)


def test_wasserstein_values():
  chex.assert_trees_all_close(losses.wasserstein_discriminator_loss(REAL, FAKE), 1.0 - 1.0)
  chex.assert_trees_all_close(losses.wasserstein_discriminator_loss(jnp.array([3.0]), jnp.array([1.0])), -2.0)
  chex.assert_trees_all_close(losses.wasserstein_generator_loss(FAKE), -1.0)


def test_hinge_values():
  # real: relu(1-0)=1, relu(1-2)=0 -> 0.5; fake: relu(1-1)=0, relu(1+3)=4 -> 2.
  chex.assert_trees_all_close(losses.hinge_discriminator_loss(REAL, FAKE), 2.5)
  chex.assert_trees_all_close(losses.hinge_generator_loss(FAKE), -1.0)


def test_least_squares_values():
  # 0.5 * mean((0-1)^2, (2-1)^2) + 0.5 * mean(1, 9) = 0.5 + 2.5.
  chex.assert_trees_all_close(losses.least_squares_discriminator_loss(REAL, FAKE), 3.0)
  # 0.5 * mean((-2)^2, 2^2) = 2.
  chex.assert_trees_all_close(losses.least_squares_generator_loss(FAKE), 2.0)


def test_auxiliary_classifier_value():
  logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
  labels = jnp.array([1, 0])
  expected = (math.log(2.0) + -math.log(3.0 / 4.0)) / 2
  chex.assert_trees_all_close(losses.auxiliary_classifier_loss(logits, labels), expected, rtol=1e-6)


def test_gradients_match_closed_form():
  x = jnp.array([-2.0, 0.5, 4.0])
  n = x.shape[0]
  # d/dx mean softplus(-x) = -sigmoid(-x) / n.
  grad_ns = jax.grad(losses.non_saturating_generator_loss)(x)
  chex.assert_trees_all_close(grad_ns, -jax.nn.sigmoid(-x) / n, rtol=1e-6)
  # d/dx mean log(1 - sigmoid(x)) = -sigmoid(x) / n.
  grad_mm = jax.grad(losses.minimax_generator_loss)(x)
  chex.assert_trees_all_close(grad_mm, -jax.nn.sigmoid(x) / n, rtol=1e-6)
  grad_real, grad_fake = jax.grad(losses.minimax_discriminator_loss, argnums=(0, 1))(x, x)
  chex.assert_trees_all_close(grad_real, -jax.nn.sigmoid(-x) / n, rtol=1e-6)
  chex.assert_trees_all_close(grad_fake, jax.nn.sigmoid(x) / n, rtol=1e-6)
  grad_ls = jax.grad(losses.least_squares_generator_loss)(x)
  chex.assert_trees_all_close(grad_ls, (x - 1.0) / n, rtol=1e-6)
  grad_hinge = jax.grad(losses.hinge_discriminator_loss, argnums=0)(x, x)
  chex.assert_trees_all_close(grad_hinge, jnp.where(x < 1.0, -1.0 / n, 0.0))


@pytest.mark.parametrize("name", sorted(losses.ADVERSARIAL_LOSSES))
def test_saturated_logits_give_finite_losses_and_gradients(name):
  d_loss, g_loss = losses.get_adversarial_losses(name)
  extreme = jnp.array([-100.0, 100.0])
  for value, grads in [
      (d_loss(extreme, extreme), jax.grad(d_loss, argnums=(0, 1))(extreme, extreme)),
      (g_loss(extreme), jax.grad(g_loss)(extreme)),
  ]:
    chex.assert_tree_all_finite(value)
    chex.assert_tree_all_finite(grads)


def test_saturated_limits_have_the_right_values():
  # D rejects fakes with certainty: non-saturating loss ~ 100, minimax ~ 0 with vanishing gradient.
  chex.assert_trees_all_close(losses.non_saturating_generator_loss(jnp.array([-100.0])), 100.0, rtol=1e-6)
  chex.assert_trees_all_close(losses.minimax_generator_loss(jnp.array([-100.0])), 0.0, atol=1e-30)
  chex.assert_trees_all_close(losses.minimax_discriminator_loss(jnp.array([100.0]), jnp.array([-100.0])),
                              0.0, atol=1e-30)
  chex.assert_trees_all_close(losses.minimax_generator_loss(jnp.array([100.0])), -100.0, rtol=1e-6)


def test_unknown_loss_name_lists_choices():
  with pytest.raises(ValueError, match="Unknown loss 'hingee'.*hinge.*wasserstein"):
    losses.get_adversarial_losses("hingee")


class TestGradientPenalty:

  def test_linear_critic_has_constant_gradient_norm(self):
    w = jnp.array([[3.0, 0.0], [0.0, 4.0]])  # ||w|| = 5 -> penalty (5 - 1)^2 = 16
    critic = lambda x: jnp.sum(x * w, axis=(1, 2))
    real = jax.random.normal(jax.random.PRNGKey(0), (6, 2, 2))
    fake = jax.random.normal(jax.random.PRNGKey(1), (6, 2, 2))
    chex.assert_trees_all_close(losses.gradient_penalty(critic, real, fake, jax.random.PRNGKey(2)), 16.0,
                                rtol=1e-5)

  def test_quadratic_critic_uses_per_example_interpolates(self):
    # critic(x) = 0.5 ||x||^2 has input gradient x, so the norm is ||x_hat_i||.
    critic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=-1)
    real = jnp.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    fake = jnp.array([[0.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    key = jax.random.PRNGKey(7)
    alpha = np.asarray(jax.random.uniform(key, (3, 1)))
    x_hat = alpha * np.asarray(real) + (1 - alpha) * np.asarray(fake)
    expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1.0) ** 2)
    chex.assert_trees_all_close(losses.gradient_penalty(critic, real, fake, key), expected, rtol=1e-5)

  def test_penalty_is_zero_for_unit_norm_gradient_and_differentiable(self):
    w = jnp.array([0.6, 0.8])
    real = jnp.ones((4, 2))
    fake = jnp.zeros((4, 2))
    penalty = lambda scale: losses.gradient_penalty(lambda x: scale * x @ w, real, fake, jax.random.PRNGKey(0))
    chex.assert_trees_all_close(penalty(1.0), 0.0, atol=1e-10)
    # d/ds (s - 1)^2 at s = 2 is 2.
    chex.assert_trees_all_close(jax.grad(penalty)(2.0), 2.0, rtol=1e-5)

  def test_shape_mismatch_is_an_error(self):
    with pytest.raises(ValueError, match="shapes differ"):
      losses.gradient_penalty(lambda x: x.sum(-1), jnp.ones((2, 3)), jnp.ones((3, 3)), jax.random.PRNGKey(0))
