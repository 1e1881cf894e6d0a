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


# --- Long-tail classification losses -----------------------------------------------------------

COUNTS = jnp.array([90.0, 9.0, 1.0])


def _ce(logits, label):
  return float(-logits[label] + np.log(np.sum(np.exp(logits))))


def test_logit_adjusted_and_balanced_softmax_by_hand():
  logits = jnp.array([[1.0, 0.5, -1.0], [0.0, 2.0, 0.0]])
  labels = jnp.array([0, 2])
  prior = np.array([0.9, 0.09, 0.01])
  expected_la = np.mean([_ce(np.asarray(logits[i]) + 0.5 * np.log(prior), int(labels[i])) for i in range(2)])
  chex.assert_trees_all_close(losses.logit_adjusted_cross_entropy(logits, labels, COUNTS, tau=0.5), expected_la,
                              rtol=1e-6)
  expected_bs = np.mean([_ce(np.asarray(logits[i]) + np.log(np.asarray(COUNTS)), int(labels[i])) for i in range(2)])
  chex.assert_trees_all_close(losses.balanced_softmax_cross_entropy(logits, labels, COUNTS), expected_bs, rtol=1e-6)
  # Balanced Softmax adds log n_c, logit adjustment with tau = 1 adds log (n_c / n): equal up to a constant.
  chex.assert_trees_all_close(losses.balanced_softmax_cross_entropy(logits, labels, COUNTS),
                              losses.logit_adjusted_cross_entropy(logits, labels, COUNTS, tau=1.0), rtol=1e-6)
  posthoc = losses.posthoc_logit_adjustment(logits, COUNTS, tau=1.0)
  chex.assert_trees_all_close(posthoc, logits - np.log(prior), rtol=1e-6)


def test_ldam_margins_and_loss_by_hand():
  margins = losses.ldam_margins(COUNTS, max_margin=0.5)
  expected = np.asarray(COUNTS) ** -0.25
  chex.assert_trees_all_close(margins, 0.5 * expected / expected.max(), rtol=1e-6)
  assert float(margins[2]) == pytest.approx(0.5) and float(margins[0]) < float(margins[1]) < 0.5
  logits = jnp.array([[0.2, 0.1, -0.3], [0.0, 0.4, 0.1]])
  labels = jnp.array([1, 2])
  per = [_ce(30.0 * (np.asarray(logits[i]) - float(margins[labels[i]]) * np.eye(3)[int(labels[i])]),
             int(labels[i])) for i in range(2)]
  chex.assert_trees_all_close(losses.ldam_loss(logits, labels, COUNTS), np.mean(per), rtol=1e-5)
  weights = jnp.array([1.0, 2.0, 5.0])
  chex.assert_trees_all_close(losses.ldam_loss(logits, labels, COUNTS, weights=weights),
                              (2.0 * per[0] + 5.0 * per[1]) / 7.0, rtol=1e-5)


def test_long_tail_loss_gradients_match_the_adjusted_softmax():
  logits = jnp.array([[0.3, -0.2, 0.1]])
  labels = jnp.array([2])
  grad = jax.grad(lambda z: losses.logit_adjusted_cross_entropy(z, labels, COUNTS))(logits)
  adjusted = np.asarray(logits[0]) + np.log(np.asarray(COUNTS) / 100.0)
  softmax = np.exp(adjusted) / np.exp(adjusted).sum()
  chex.assert_trees_all_close(grad[0], softmax - np.eye(3)[2], rtol=1e-5, atol=1e-7)
  grad = jax.grad(lambda z: losses.ldam_loss(z, labels, COUNTS, scale=2.0))(logits)
  shifted = 2.0 * (np.asarray(logits[0]) - 0.5 * np.eye(3)[2])
  softmax = np.exp(shifted) / np.exp(shifted).sum()
  chex.assert_trees_all_close(grad[0], 2.0 * (softmax - np.eye(3)[2]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", [
    lambda z, y: losses.logit_adjusted_cross_entropy(z, y, COUNTS),
    lambda z, y: losses.balanced_softmax_cross_entropy(z, y, COUNTS),
    lambda z, y: losses.ldam_loss(z, y, COUNTS),
])
def test_long_tail_losses_stay_finite_at_extreme_logits(loss):
  logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
  labels = jnp.array([1, 2])
  value, grad = jax.value_and_grad(loss)(logits, labels)
  assert np.isfinite(float(value)) and float(value) > 1e3
  assert np.all(np.isfinite(np.asarray(grad)))


def test_effective_number_weights():
  weights = losses.effective_number_weights(COUNTS, beta=0.9999)
  raw = (1 - 0.9999) / (1 - 0.9999 ** np.asarray(COUNTS))
  chex.assert_trees_all_close(weights, raw / raw.sum() * 3, rtol=1e-4)
  assert float(weights[2]) > float(weights[1]) > float(weights[0])
  chex.assert_trees_all_close(losses.effective_number_weights(COUNTS, beta=0.0), jnp.ones(3))


def test_l1_loss_is_the_mean_absolute_error():
  x_hat = jnp.array([[0.0, 1.0], [2.0, -1.0]])
  x = jnp.array([[1.0, 1.0], [0.0, 0.0]])
  chex.assert_trees_all_close(losses.l1_loss(x_hat, x), (1 + 0 + 2 + 1) / 4)


def test_cycle_loss_is_zero_for_mutually_inverse_maps():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  forward = lambda v: 2.0 * v + 0.5
  backward = lambda v: (v - 0.5) / 2.0
  for distance in losses.RECONSTRUCTION_DISTANCES:
    chex.assert_trees_all_close(losses.cycle_consistency_loss(backward(forward(x)), x, distance), 0.0, atol=1e-6)
    assert float(losses.cycle_consistency_loss(forward(forward(x)), x, distance)) > 0.1


def test_identity_loss_is_zero_for_the_identity_map_and_l2_squares():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 1))
  chex.assert_trees_all_close(losses.cycle_consistency_loss(x, x), 0.0)
  chex.assert_trees_all_close(losses.cycle_consistency_loss(x + 3.0, x, "l2"), 9.0, rtol=1e-6)
  chex.assert_trees_all_close(losses.cycle_consistency_loss(x + 3.0, x, "l1"), 3.0, rtol=1e-6)
  with pytest.raises(ValueError, match="choose one of: l1, l2"):
    losses.cycle_consistency_loss(x, x, "l3")
