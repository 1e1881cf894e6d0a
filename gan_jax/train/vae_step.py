"""Train state, pure train steps and per-example evaluation of the autoencoder families.

One state type serves every family (`ae`, `vae`, `cvae`, `aae`); models without a
discriminator carry empty `d_params` / `d_opt_state`. Randomness is
`fold_in(state.rng, state.step)`, so a restored state replays the noise (and the
dynamic binarisation) of an uninterrupted run. Keys use XLA's RngBitGenerator
('rbg'), which compiles several times faster on CPU than threefry (parameter
initialisation dominated short runs); the state stores the raw key data so
checkpoints hold plain uint32 arrays.

Losses are computed per example (see the autoencoder section of
`gan_jax.losses`) and averaged over the batch only for the gradient, so the same
functions give the test-set negative ELBO and the anomaly scores.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from gan_jax import losses
from gan_jax.models.autoencoders import ReconstructionModel
from gan_jax.models.autoencoders import reparameterize

PyTree = Any
Metrics = dict[str, jax.Array]
LIKELIHOODS = ("bernoulli", "gaussian")
PRNG_IMPL = "rbg"


def make_key(seed: int) -> jax.Array:
  """The typed PRNG key every run of this module starts from."""
  return jax.random.key(seed, impl=PRNG_IMPL)


@flax.struct.dataclass
class AETrainState:
  """Everything that changes during training; a pure pytree (checkpointable)."""
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  d_params: PyTree
  d_opt_state: PyTree
  rng: jax.Array  # raw key data of a PRNG_IMPL key

  def step_key(self) -> jax.Array:
    """The key of the current step: a pure function of the run's key and the step."""
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng, impl=PRNG_IMPL), self.step)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the step and of the evaluation.

  Attributes:
    likelihood: 'bernoulli' (sigmoid cross-entropy) or 'gaussian' (fixed std).
    gaussian_std: standard deviation of the Gaussian likelihood.
    beta: weight of the KL term (beta-VAE, Higgins et al., ICLR 2017); 1 is the ELBO.
    binarize: train on pixels resampled as Bernoulli(intensity) every step.
    adversarial_weight: weight of the aae's non-saturating adversarial loss.
    aae_score_weight: lambda of the aae anomaly score (see `per_example_metrics`).
  """
  likelihood: str = "bernoulli"
  gaussian_std: float = 0.1
  beta: float = 1.0
  binarize: bool = False
  adversarial_weight: float = 1.0
  aae_score_weight: float = 1.0

  def __post_init__(self):
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"Unknown likelihood '{self.likelihood}'; choose one of: {', '.join(LIKELIHOODS)}")
    if self.gaussian_std <= 0:
      raise ValueError(f"gaussian_std must be positive, got {self.gaussian_std}")


def init_train_state(model: ReconstructionModel, tx: optax.GradientTransformation,
                     d_tx: optax.GradientTransformation, key: jax.Array) -> AETrainState:
  """Parameters and optimizer states from one typed PRNG key (see `make_key`; pure, jit-able)."""
  init_key, run_key = jax.random.split(key)
  params, d_params = model.init(init_key)
  return AETrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      d_params=d_params, d_opt_state=d_tx.init(d_params), rng=jax.random.key_data(run_key))


def reconstruction_nll(logits: jax.Array, images: jax.Array, cfg: StepConfig) -> jax.Array:
  """-log p(x | z) per example, in nats, under the configured likelihood."""
  if cfg.likelihood == "bernoulli":
    return losses.bernoulli_reconstruction_loss(logits, images)
  return losses.gaussian_reconstruction_loss(jax.nn.sigmoid(logits), images, math.log(cfg.gaussian_std))


def vae_terms(model: ReconstructionModel, params: PyTree, images: jax.Array, labels: jax.Array, key: jax.Array,
              cfg: StepConfig) -> tuple[jax.Array, jax.Array]:
  """One-sample (reconstruction NLL [N], KL [N]) of the (C)VAE, in nats; their sum is the negative ELBO."""
  logits, mean, logvar = model.autoencoder.apply({"params": params}, images, key, model.labels_in(labels))
  return reconstruction_nll(logits, images, cfg), losses.gaussian_kl(mean, logvar)


def reconstruct(model: ReconstructionModel, params: PyTree, images: jax.Array,
                labels: jax.Array | None = None) -> jax.Array:
  """Reconstructions in [0, 1] through the code (AE) or the posterior mean (VAE)."""
  code = model.encode(params, images, labels)
  z = code[0] if model.variational else code
  return jax.nn.sigmoid(model.decode(params, z, labels))


def _vae_objective(params, images, labels, key, *, model: ReconstructionModel, cfg: StepConfig):
  recon, kl = vae_terms(model, params, images, labels, key, cfg)
  loss = jnp.mean(recon + cfg.beta * kl)
  return loss, {"loss": loss, "neg_elbo": jnp.mean(recon + kl), "recon": jnp.mean(recon), "kl": jnp.mean(kl)}


def _ae_objective(params, d_params, images, labels, *, model: ReconstructionModel, cfg: StepConfig):
  x_hat = reconstruct(model, params, images, labels)
  error = jnp.mean(losses.squared_error(x_hat, images))
  metrics = {"mse": error / math.prod(model.image_shape)}
  loss = error
  if model.discriminator is not None:
    adversarial = losses.non_saturating_generator_loss(model.discriminate(d_params, x_hat))
    loss = loss + cfg.adversarial_weight * adversarial
    metrics["g_adversarial"] = adversarial
  metrics["loss"] = loss
  return loss, metrics


def _discriminator_objective(d_params, images, x_hat, *, model: ReconstructionModel):
  """Real images -> 1, reconstructions -> 0 (ALOCC's D), one pass over both."""
  logits = model.discriminate(d_params, jnp.concatenate([images, x_hat]))
  real, fake = logits[:images.shape[0]], logits[images.shape[0]:]
  loss = losses.minimax_discriminator_loss(real, fake)
  return loss, {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real)), "d_fake": jnp.mean(jax.nn.sigmoid(fake))}


def make_train_step(model: ReconstructionModel, cfg: StepConfig, tx: optax.GradientTransformation,
                    d_tx: optax.GradientTransformation) -> Callable[[AETrainState, dict], tuple[AETrainState, Metrics]]:
  """Builds the pure `train_step(state, batch) -> (state, metrics)`.

  `batch["image"]` is [B, H, W, C] in [0, 1] and `batch["label"]` is [B]. The aae
  first updates D on (images, current reconstructions), then the autoencoder
  against the updated D, as in the alternating GAN updates of `gan_step`.
  """

  def train_step(state: AETrainState, batch: dict) -> tuple[AETrainState, Metrics]:
    images, labels = batch["image"], batch["label"]
    binarize_key, noise_key = jax.random.split(state.step_key())
    if cfg.binarize:
      images = jax.random.bernoulli(binarize_key, images).astype(images.dtype)
    metrics = {}
    if model.discriminator is not None:
      x_hat = jax.lax.stop_gradient(reconstruct(model, state.params, images, labels))
      d_grads, metrics = jax.grad(lambda d: _discriminator_objective(d, images, x_hat, model=model),
                                  has_aux=True)(state.d_params)
      d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
      state = state.replace(d_params=optax.apply_updates(state.d_params, d_updates), d_opt_state=d_opt_state)
    if model.variational:
      grads, ae_metrics = jax.grad(_vae_objective, has_aux=True)(state.params, images, labels, noise_key,
                                                                 model=model, cfg=cfg)
    else:
      grads, ae_metrics = jax.grad(_ae_objective, has_aux=True)(state.params, state.d_params, images, labels,
                                                                model=model, cfg=cfg)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
    return state, {**metrics, **ae_metrics}

  return train_step


def iwae_log_likelihood(model: ReconstructionModel, params: PyTree, images: jax.Array, labels: jax.Array,
                        key: jax.Array, num_samples: int, cfg: StepConfig) -> jax.Array:
  """Importance-weighted lower bound on log p(x) per example (Burda et al., ICLR 2016).

  log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x); it tightens towards
  log p(x) as K grows (K = 1 is the ELBO). Samples are drawn sequentially so memory
  does not grow with K.
  """
  mean, logvar = model.encode(params, images, labels)

  def log_weight(sample_key):
    z = reparameterize(mean, logvar, sample_key)
    log_px = -reconstruction_nll(model.decode(params, z, labels), images, cfg)
    log_pz = jnp.sum(jax.scipy.stats.norm.logpdf(z), axis=-1)
    log_qz = jnp.sum(jax.scipy.stats.norm.logpdf(z, mean, jnp.exp(0.5 * logvar)), axis=-1)
    return log_px + log_pz - log_qz

  weights = jax.lax.map(log_weight, jax.random.split(key, num_samples))  # [K, N]
  return jax.nn.logsumexp(weights, axis=0) - jnp.log(num_samples)


def per_example_metrics(model: ReconstructionModel, cfg: StepConfig, state: AETrainState, images: jax.Array,
                        labels: jax.Array, key: jax.Array, num_samples: int = 1,
                        iwae_samples: int = 0) -> dict[str, jax.Array]:
  """Evaluation figures and anomaly scores of each example ([N] arrays; higher = worse fit).

  * every model: `squared_error` ||x - x_hat||^2 through the code / posterior mean.
  * vae, cvae: `neg_elbo`, `recon`, `kl` in nats, averaged over `num_samples`
    posterior samples (beta = 1: the true negative ELBO whatever the training beta);
    with `iwae_samples` > 0 also `iwae_nll`, the importance-weighted bound.
  * aae: `disc_score` = -log D(x_hat) and `aae_score` = squared_error + lambda *
    disc_score. The reconstruction error is the residual of AnoGAN's score (Schlegl
    et al., IPMI 2017); the discriminator term is ALOCC's: D, trained to tell real
    normal images from their reconstructions, rejects the distorted reconstructions
    of anomalies (Sabokrou et al., CVPR 2018, who score with D(R(x)) alone).
  """
  x_hat = reconstruct(model, state.params, images, labels)
  out = {"squared_error": losses.squared_error(x_hat, images)}
  if model.variational:
    one_sample = functools.partial(vae_terms, model, state.params, images, labels, cfg=cfg)
    recon, kl = jax.tree.map(lambda x: jnp.mean(x, axis=0),
                             jax.lax.map(one_sample, jax.random.split(key, num_samples)))
    out.update(neg_elbo=recon + kl, recon=recon, kl=kl)
    if iwae_samples > 0:
      out["iwae_nll"] = -iwae_log_likelihood(model, state.params, images, labels, jax.random.fold_in(key, 1),
                                              iwae_samples, cfg)
  if model.discriminator is not None:
    out["disc_score"] = jax.nn.softplus(-model.discriminate(state.d_params, x_hat))
    out["aae_score"] = out["squared_error"] + cfg.aae_score_weight * out["disc_score"]
  return out
