"""Pure GAN loss functions.

Every function takes logits or critic scores (never probabilities) and returns a
scalar mean over the batch. Working in logit space with `softplus` keeps the
losses finite even for saturated discriminators (|logit| ~ 100), where the
textbook `log(sigmoid(x))` form underflows to -inf.

Identities used throughout:
  -log(sigmoid(x))     = softplus(-x)
  -log(1 - sigmoid(x)) = softplus(x)
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def minimax_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Discriminator loss of the original minimax game (Goodfellow et al., 2014).

  Binary cross-entropy with real -> 1 and fake -> 0, no label smoothing.

  Args:
    real_logits: discriminator logits on real images, any shape.
    fake_logits: discriminator logits on generated images, any shape.

  Returns:
    mean softplus(-real) + mean softplus(fake).
  """
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def minimax_generator_loss(fake_logits: Array) -> Array:
  """Saturating generator loss: the generator minimises E[log(1 - D(G(z)))].

  Its gradient vanishes when the discriminator confidently rejects fakes, which is
  why `non_saturating_generator_loss` is the usual practical choice.

  Args:
    fake_logits: discriminator logits on generated images.

  Returns:
    mean log(1 - sigmoid(fake)) = -mean softplus(fake).
  """
  return -jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_generator_loss(fake_logits: Array) -> Array:
  """Non-saturating generator loss: maximise log D(G(z)).

  Args:
    fake_logits: discriminator logits on generated images.

  Returns:
    mean softplus(-fake).
  """
  return jnp.mean(jax.nn.softplus(-fake_logits))


def wasserstein_discriminator_loss(real_scores: Array, fake_scores: Array) -> Array:
  """Critic loss of WGAN (Arjovsky et al., 2017): mean(fake) - mean(real)."""
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wasserstein_generator_loss(fake_scores: Array) -> Array:
  """Generator loss of WGAN: -mean(fake)."""
  return -jnp.mean(fake_scores)


def hinge_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Hinge loss (Lim & Ye, 2017; Miyato et al., 2018).

  Returns:
    mean relu(1 - real) + mean relu(1 + fake).
  """
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: Array) -> Array:
  """Generator side of the hinge loss: -mean(fake)."""
  return -jnp.mean(fake_logits)


def least_squares_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """LSGAN discriminator loss (Mao et al., 2017) with targets a=0, b=1.

  Returns:
    0.5 mean (real - 1)^2 + 0.5 mean fake^2.
  """
  return 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def least_squares_generator_loss(fake_logits: Array) -> Array:
  """LSGAN generator loss with target c=1: 0.5 mean (fake - 1)^2."""
  return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))


def gradient_penalty(critic_fn: Callable[[Array], Array], real: Array, fake: Array, key: Array) -> Array:
  """WGAN-GP gradient penalty (Gulrajani et al., 2017).

  Penalises the critic's input-gradient norm on random interpolates
  x_hat = a * real + (1 - a) * fake, a ~ U(0, 1) drawn once per example. The
  gradient is the true input gradient (one VJP of the summed critic output, which
  equals the per-example gradient because examples do not interact in a critic
  without batch statistics).

  Args:
    critic_fn: maps a batch [N, ...] to scores of shape [N] or [N, 1].
    real: real batch [N, ...].
    fake: generated batch, same shape as `real`.
    key: PRNG key for the interpolation coefficients.

  Returns:
    mean over examples of (||grad_x critic(x_hat)||_2 - 1)^2.
  """
  if real.shape != fake.shape:
    raise ValueError(f"real and fake shapes differ: {real.shape} vs {fake.shape}")
  alpha_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
  alpha = jax.random.uniform(key, alpha_shape, dtype=real.dtype)
  x_hat = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(critic_fn: Callable[[Array], Array], real: Array, gamma: float = 10.0, interval: int = 1) -> Array:
  """R1 regularisation (Mescheder et al., ICML 2018) as StyleGAN2 applies it, lazily.

  gamma / 2 * E[||grad_x D(x)||^2] on real images; computed every `interval` D steps and
  multiplied by `interval` there, so its average strength equals the every-step penalty
  (Karras et al., CVPR 2020, sec. 3.1).

  Args:
    critic_fn: maps a batch [N, ...] to scores [N] or [N, 1] (no batch statistics).
    real: real batch.
    gamma: the penalty weight.
    interval: how often the caller applies it (1: every step).
  """
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(real)
  return 0.5 * gamma * interval * jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))


def auxiliary_classifier_loss(class_logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy of the ACGAN auxiliary classifier (Odena et al., 2017).

  Args:
    class_logits: [N, num_classes] logits.
    labels: [N] integer class labels.

  Returns:
    scalar mean cross-entropy.
  """
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


# name -> (discriminator loss, generator loss). `minimax` is the saturating game;
# `non_saturating` shares its discriminator loss.
ADVERSARIAL_LOSSES: dict[str, tuple[Callable[[Array, Array], Array], Callable[[Array], Array]]] = {
    "minimax": (minimax_discriminator_loss, minimax_generator_loss),
    "non_saturating": (minimax_discriminator_loss, non_saturating_generator_loss),
    "wasserstein": (wasserstein_discriminator_loss, wasserstein_generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "least_squares": (least_squares_discriminator_loss, least_squares_generator_loss),
}


def get_adversarial_losses(name: str):
  """Returns the (discriminator_loss, generator_loss) pair registered under `name`.

  Raises:
    ValueError: for an unknown name, listing the allowed ones.
  """
  if name not in ADVERSARIAL_LOSSES:
    raise ValueError(f"Unknown loss '{name}'; choose one of: {', '.join(sorted(ADVERSARIAL_LOSSES))}")
  return ADVERSARIAL_LOSSES[name]


# ---------------------------------------------------------------------------
# Autoencoder and VAE losses. Unlike the GAN losses above, these return one
# value per example (shape [N]): the ELBO is a per-image quantity, and anomaly
# scoring ranks individual test images, so callers average only when training.
# ---------------------------------------------------------------------------


def _sum_per_example(x: Array) -> Array:
  """Sums every axis but the first: [N, ...] -> [N]."""
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def gaussian_kl(mean: Array, logvar: Array) -> Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) of a diagonal Gaussian, in nats.

  Closed form (Kingma & Welling, 2014, appendix B), per latent dimension:
  0.5 * (mean^2 + var - 1 - logvar).

  Args:
    mean: [N, D] posterior means.
    logvar: [N, D] posterior log-variances.

  Returns:
    [N] KL divergence of each example, summed over the D latent dimensions.
  """
  # expm1 keeps var - 1 - logvar accurate (and >= 0) when logvar is near 0.
  per_dim = 0.5 * (jnp.square(mean) + jnp.expm1(logvar) - logvar)
  return _sum_per_example(per_dim)


def bernoulli_reconstruction_loss(logits: Array, x: Array) -> Array:
  """-log p(x | logits) of independent Bernoulli pixels, summed over pixels.

  Sigmoid cross-entropy in the softplus form, finite for any logit: for targets
  in [0, 1] (grey levels, not only binary) it is the usual "BCE" VAE loss.

  Args:
    logits: [N, ...] decoder logits.
    x: targets in [0, 1], same shape.

  Returns:
    [N] reconstruction loss in nats.
  """
  # -x log s(l) - (1 - x) log(1 - s(l)) = softplus(l) - x * l
  return _sum_per_example(jax.nn.softplus(logits) - x * logits)


def gaussian_reconstruction_loss(x_hat: Array, x: Array, log_scale: Array | float = 0.0) -> Array:
  """-log N(x; x_hat, exp(log_scale)^2) summed over pixels (a density, so it may be negative).

  Args:
    x_hat: [N, ...] decoder means.
    x: targets, same shape.
    log_scale: log standard deviation, a scalar or broadcastable to x.

  Returns:
    [N] negative log-density in nats.
  """
  log_scale = jnp.broadcast_to(jnp.asarray(log_scale, x_hat.dtype), x_hat.shape)
  z = (x - x_hat) * jnp.exp(-log_scale)
  per_pixel = 0.5 * jnp.square(z) + log_scale + 0.5 * jnp.log(2.0 * jnp.pi)
  return _sum_per_example(per_pixel)


def squared_error(x_hat: Array, x: Array) -> Array:
  """||x - x_hat||^2 of each example: [N, ...] -> [N] (the autoencoder loss and anomaly score)."""
  return _sum_per_example(jnp.square(x - x_hat))


# ---------------------------------------------------------------------------
# Image-to-image translation losses (pix2pix, CycleGAN, the structural analogy).
# Scalar means over every pixel, so their weights (lambda_L1 = 100, lambda_cycle
# = 10) mean what the papers' weights mean.
# ---------------------------------------------------------------------------

RECONSTRUCTION_DISTANCES = ("l1", "l2")


def l1_loss(x_hat: Array, x: Array) -> Array:
  """Mean absolute error over every element: pix2pix's L1 term (Isola et al., 2017)."""
  return jnp.mean(jnp.abs(x_hat - x))


def cycle_consistency_loss(reconstructed: Array, original: Array, distance: str = "l1") -> Array:
  """Mean distance between an image and its round trip through both translators.

  CycleGAN (Zhu et al., 2017) uses 'l1' on F(G(a)) vs a; the structural analogy uses
  'l2'. The identity loss is the same distance between G(b) and b.

  Raises:
    ValueError: for a distance not in RECONSTRUCTION_DISTANCES.
  """
  if distance == "l1":
    return l1_loss(reconstructed, original)
  if distance == "l2":
    return jnp.mean(jnp.square(reconstructed - original))
  raise ValueError(f"Unknown distance '{distance}'; choose one of: {', '.join(RECONSTRUCTION_DISTANCES)}")


# ---------------------------------------------------------------------------
# Long-tail classification losses. Each is the softmax cross-entropy of
# adjusted logits; `class_counts` are the training set's images per class.
# Working on log-softmax keeps them finite for any logit.
# ---------------------------------------------------------------------------


def log_prior(class_counts: Array) -> Array:
  """log pi_c = log(n_c / sum n) of the training label distribution."""
  counts = jnp.asarray(class_counts, jnp.float32)
  return jnp.log(counts) - jnp.log(jnp.sum(counts))


def _mean_cross_entropy(logits: Array, labels: Array, weights: Array | None = None) -> Array:
  """Mean CE, or sum_i w_{y_i} CE_i / sum_i w_{y_i} with per-class `weights` (PyTorch's weighted CE)."""
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(per_example)
  w = jnp.take(jnp.asarray(weights, jnp.float32), labels)
  return jnp.sum(w * per_example) / jnp.sum(w)


def logit_adjusted_cross_entropy(logits: Array, labels: Array, class_counts: Array, tau: float = 1.0) -> Array:
  """Logit-adjusted loss (Menon et al., ICLR 2021): mean CE of logits + tau * log pi.

  Args:
    logits: [N, C].
    labels: [N] integer labels.
    class_counts: [C] training images per class.
    tau: the adjustment's temperature (1 is Fisher-consistent for the balanced error).
  """
  return _mean_cross_entropy(logits + tau * log_prior(class_counts), labels)


def balanced_softmax_cross_entropy(logits: Array, labels: Array, class_counts: Array) -> Array:
  """Balanced Softmax (Ren et al., NeurIPS 2020): mean CE of logits + log n_c."""
  return _mean_cross_entropy(logits + jnp.log(jnp.asarray(class_counts, jnp.float32)), labels)


def ldam_margins(class_counts: Array, max_margin: float = 0.5) -> Array:
  """Delta_c = max_margin * n_c^(-1/4) / max_c n_c^(-1/4): the rarest class gets `max_margin`."""
  inverse_fourth_root = jnp.asarray(class_counts, jnp.float32) ** -0.25
  return max_margin * inverse_fourth_root / jnp.max(inverse_fourth_root)


def ldam_logits(logits: Array, labels: Array, class_counts: Array, max_margin: float = 0.5,
                scale: float = 30.0) -> Array:
  """scale * (logits - Delta_y at the true class): the logits LDAM's cross-entropy sees."""
  margins = jnp.take(ldam_margins(class_counts, max_margin), labels)
  return scale * (logits - margins[:, None] * jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype))


def ldam_loss(logits: Array, labels: Array, class_counts: Array, max_margin: float = 0.5, scale: float = 30.0,
              weights: Array | None = None) -> Array:
  """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019).

  CE(scale * (z - Delta_y * onehot(y))), the margin Delta_c proportional to n_c^(-1/4)
  (`ldam_margins`). The paper applies it to cosine logits (a normalised linear head),
  for which scale 30 is the published value.

  Args:
    logits: [N, C].
    labels: [N].
    class_counts: [C].
    max_margin: the rarest class's margin.
    scale: s.
    weights: per-class weights [C] (deferred re-weighting), or None.

  Returns:
    The mean (weighted mean with `weights`) cross-entropy.
  """
  return _mean_cross_entropy(ldam_logits(logits, labels, class_counts, max_margin, scale), labels, weights)


def posthoc_logit_adjustment(logits: Array, class_counts: Array, tau: float = 1.0) -> Array:
  """Post-hoc logit adjustment (Menon et al., ICLR 2021): logits - tau * log pi, for the argmax."""
  return logits - tau * log_prior(class_counts)


def effective_number_weights(class_counts: Array, beta: float = 0.9999) -> Array:
  """Class-balanced weights (Cui et al., CVPR 2019): (1 - beta) / (1 - beta^n_c), normalised to sum to C.

  beta -> 1 approaches inverse frequency; beta = 0 gives equal weights.
  """
  counts = jnp.asarray(class_counts, jnp.float32)
  raw = (1.0 - beta) / (1.0 - jnp.power(beta, counts)) if beta > 0 else jnp.ones_like(counts)
  return raw / jnp.sum(raw) * counts.shape[0]
