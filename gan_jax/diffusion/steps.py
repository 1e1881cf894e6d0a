"""Train states and pure train steps of the two diffusion stages: the first-stage autoencoder and the denoiser.

Randomness is `fold_in(state.rng, state.step)`, so a restored state replays the
noise of an uninterrupted run. A step never applies a non-finite update: the
update is computed, and the old state kept where a loss or gradient is NaN/Inf.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from gan_jax import losses
from gan_jax.diffusion import objective
from gan_jax.diffusion import sampling
from gan_jax.diffusion import schedule as schedule_lib
from gan_jax.models import kl_autoencoder
from gan_jax.train import nonfinite

PyTree = Any
RECONSTRUCTIONS = ("l1", "l2")


@flax.struct.dataclass
class TrainState:
  """Step, parameters, optimiser state, an EMA of the parameters (the denoiser samples from it), run key."""
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  ema_params: PyTree
  rng: jax.Array

  def step_key(self) -> jax.Array:
    return jax.random.fold_in(self.rng, self.step)


def init_state(params: PyTree, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
  # The EMA starts as a copy, not the same buffers: a donating step must not receive one buffer twice.
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ema_params=jax.tree.map(jnp.array, params), rng=key)


def _apply(state: TrainState, grads, loss, tx, ema_decay: float) -> TrainState:
  def updated():
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)
    return params, opt_state, ema

  params, opt_state, ema = nonfinite.apply_if_finite((state.params, state.opt_state, state.ema_params), updated,
                                                     loss, grads)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)


@dataclasses.dataclass(frozen=True)
class FirstStageConfig:
  """The first stage's loss.

  reconstruction: 'l1' or 'l2' per pixel; kl_weight: weight of the KL to N(0, I) (1e-6 in latent diffusion);
  disc_weight: scale of the patch discriminator's generator loss (0: no discriminator; 0.5 in latent
  diffusion's autoencoders), applied from step disc_start on with the adaptive weight of `adaptive_weight`;
  disc_loss: a name of `gan_jax.losses.ADVERSARIAL_LOSSES`.
  """
  reconstruction: str = "l1"
  kl_weight: float = 1e-6
  disc_weight: float = 0.0
  disc_start: int = 0
  disc_loss: str = "hinge"

  def __post_init__(self):
    if self.reconstruction not in RECONSTRUCTIONS:
      raise ValueError(f"Unknown reconstruction '{self.reconstruction}'; choose one of: {', '.join(RECONSTRUCTIONS)}")
    if self.kl_weight < 0:
      raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
    if self.disc_weight < 0:
      raise ValueError(f"ae_disc_weight must be >= 0, got {self.disc_weight}")
    if self.disc_start < 0:
      raise ValueError(f"ae_disc_start must be >= 0, got {self.disc_start}")
    losses.get_adversarial_losses(self.disc_loss)

  @property
  def adversarial(self) -> bool:
    return self.disc_weight > 0


@flax.struct.dataclass
class AdversarialTrainState(TrainState):
  """A first stage trained against a patch discriminator: the autoencoder's state plus the critic's."""
  critic_params: PyTree
  critic_opt_state: PyTree


def first_stage_loss(reconstruction: jax.Array, images: jax.Array, mean: jax.Array, logvar: jax.Array,
                     cfg: FirstStageConfig) -> tuple[jax.Array, dict]:
  """Per-pixel reconstruction + kl_weight x KL(N(mean, exp logvar) || N(0, I)) summed per latent image, batch mean."""
  error = reconstruction - images
  recon = jnp.mean(jnp.abs(error)) if cfg.reconstruction == "l1" else jnp.mean(jnp.square(error))
  kl = jnp.mean(jnp.sum(0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar), axis=(1, 2, 3)))
  loss = recon + cfg.kl_weight * kl
  return loss, {"loss": loss, "recon": recon, "kl": kl}


def adaptive_weight(reconstruction_grad: jax.Array, generator_grad: jax.Array) -> jax.Array:
  """||grad of the reconstruction loss|| / (||grad of the generator loss|| + 1e-4), clipped to [0, 1e4].

  Both gradients are taken at the decoder's last layer, so the adversarial term pulls on the output
  as hard as the reconstruction does, whatever the losses' scales (Esser et al., CVPR 2021, eq. 7).
  """
  ratio = jnp.linalg.norm(reconstruction_grad) / (jnp.linalg.norm(generator_grad) + 1e-4)
  return jax.lax.stop_gradient(jnp.clip(ratio, 0.0, 1e4))


@dataclasses.dataclass(frozen=True)
class FirstStagePhases:
  """The first-stage step before and from the critic's start step, for a caller that knows the step.

  Attributes:
    before_start: the plain step on the adversarial state, the critic untouched.
    adversarial: the step with the critic's term and update.
    start: the first step that runs `adversarial`.
  """
  before_start: Callable
  adversarial: Callable
  start: int

  def at(self, step: int) -> Callable:
    """The phase that runs at `step` (a host integer)."""
    return self.adversarial if step >= self.start else self.before_start


def make_first_stage_phases(model, tx: optax.GradientTransformation, cfg: FirstStageConfig, critic,
                            critic_tx: optax.GradientTransformation) -> FirstStagePhases:
  """The adversarial first stage's two phases as separate pure steps (see `make_first_stage_step`).

  Each (state, batch {'image' [B, H, W, C] in [-1, 1]}) -> (state, metrics). A train loop jits
  each and picks by its step counter: inside a `lax.cond` branch XLA:CPU leaves the gradient
  convolutions non-canonical and runs them as naive loops (an ldm_mnist step at batch 64 with the
  critic: 19.5 s in the cond against 0.36 s as its own program, measured on the 2-core CPU).
  """
  if critic is None or critic_tx is None:
    raise ValueError("a first stage with ae_disc_weight > 0 needs a critic and its optimiser")
  d_loss_fn, g_loss_fn = losses.get_adversarial_losses(cfg.disc_loss)
  plain_step = _plain_first_stage_step(model, tx, cfg)

  def adversarial_step(state: AdversarialTrainState, batch: dict):
    images = batch["image"]

    def terms(params):
      reconstruction, mean, logvar = model.apply({"params": params}, images, state.step_key())
      nll, metrics = first_stage_loss(reconstruction, images, mean, logvar, cfg)
      g_loss = g_loss_fn(critic.apply({"params": state.critic_params}, reconstruction))
      return (nll, g_loss), (reconstruction, metrics)

    # One forward pass, two backward passes: the gradients of each term, for the adaptive weight.
    (nll, g_loss), pullback, (reconstruction, metrics) = jax.vjp(terms, state.params, has_aux=True)
    (nll_grads,) = pullback((jnp.ones_like(nll), jnp.zeros_like(g_loss)))
    (g_grads,) = pullback((jnp.zeros_like(nll), jnp.ones_like(g_loss)))
    weight = cfg.disc_weight * adaptive_weight(kl_autoencoder.output_kernel(nll_grads),
                                                        kl_autoencoder.output_kernel(g_grads))
    grads = jax.tree.map(lambda a, b: a + weight * b, nll_grads, g_grads)
    loss = nll + weight * g_loss

    def critic_loss(critic_params):
      logits = critic.apply({"params": critic_params},
                            jnp.concatenate([images, jax.lax.stop_gradient(reconstruction)]))
      real, fake = jnp.split(logits, 2)
      return d_loss_fn(real, fake)

    d_loss, d_grads = jax.value_and_grad(critic_loss)(state.critic_params)

    def critic_updated():
      updates, critic_opt_state = critic_tx.update(d_grads, state.critic_opt_state, state.critic_params)
      return optax.apply_updates(state.critic_params, updates), critic_opt_state

    critic_params, critic_opt_state = nonfinite.apply_if_finite((state.critic_params, state.critic_opt_state),
                                                                critic_updated, d_loss, d_grads)
    state = _apply(state, grads, loss, tx, 0.0).replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
    return state, {**metrics, "loss": loss, "g_loss": g_loss, "d_loss": d_loss, "disc_weight": weight}

  def before_start(state: AdversarialTrainState, batch: dict):
    # The plain step, the critic and its optimiser untouched: its Adam starts counting at the start.
    state, metrics = plain_step(state, batch)
    zero = jnp.zeros((), metrics["loss"].dtype)
    return state, {**metrics, "g_loss": zero, "d_loss": zero, "disc_weight": zero}

  return FirstStagePhases(before_start, adversarial_step, cfg.disc_start)


def _plain_first_stage_step(model, tx: optax.GradientTransformation, cfg: FirstStageConfig) -> Callable:
  def plain_step(state: TrainState, batch: dict):
    def loss_fn(params):
      reconstruction, mean, logvar = model.apply({"params": params}, batch["image"], state.step_key())
      return first_stage_loss(reconstruction, batch["image"], mean, logvar, cfg)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return _apply(state, grads, loss, tx, 0.0), metrics

  return plain_step


def make_first_stage_step(model, tx: optax.GradientTransformation, cfg: FirstStageConfig, critic=None,
                          critic_tx: optax.GradientTransformation | None = None) -> Callable:
  """(state, batch {'image' [B, H, W, C] in [-1, 1]}) -> (state, metrics), one program.

  With `cfg.adversarial`, `critic` (a patch discriminator) and `critic_tx` train on reals against the
  step's reconstructions, and the autoencoder's loss gains disc_weight x adaptive weight x the
  generator loss from step `cfg.disc_start` on; before it the step equals the plain one. The two
  phases meet in a `lax.cond` on the state's step; training jits `make_first_stage_phases` instead,
  which XLA:CPU runs far faster.
  """
  if not cfg.adversarial:
    return _plain_first_stage_step(model, tx, cfg)
  phases = make_first_stage_phases(model, tx, cfg, critic, critic_tx)

  def step(state: AdversarialTrainState, batch: dict):
    # lax.cond runs one branch: before the start the critic costs nothing.
    return jax.lax.cond(state.step >= cfg.disc_start, phases.adversarial, phases.before_start, state, batch)

  return step


_DROPOUT_TAG = 0xD0


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
  """prediction: 'epsilon' or 'v'; label_dropout: share of labels replaced by the null token (guidance)."""
  prediction: str = "epsilon"
  label_dropout: float = 0.1
  ema_decay: float = 0.999

  def __post_init__(self):
    if self.prediction not in schedule_lib.PREDICTIONS:
      raise ValueError(f"Unknown prediction '{self.prediction}'; choose one of: {', '.join(schedule_lib.PREDICTIONS)}")
    if not 0.0 <= self.label_dropout < 1.0:
      raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


def make_denoiser_step(denoiser, tx: optax.GradientTransformation, schedule: schedule_lib.Schedule,
                       cfg: DenoiserConfig, num_classes: int, to_latent: Callable | None = None) -> Callable:
  """(state, batch {'image', 'label'}, first_stage=None) -> (state, metrics) of the denoising objective.

  Args:
    denoiser: a `ConditionalDenoiser` (label `num_classes` is the null token).
    tx: the optimiser.
    schedule: the noise schedule.
    cfg: prediction target, label dropout, EMA.
    num_classes: classes of the data set.
    to_latent: (first_stage, images in [-1, 1], key) -> scaled latents (`latent_encoder`); None trains
      on pixels. The step's `first_stage` argument (frozen, not trained) is passed to it.
  """

  def step(state: TrainState, batch: dict, first_stage: Any = None):
    drop_key, latent_key, loss_key = jax.random.split(state.step_key(), 3)
    # Apart from the three draws above, which it leaves as they were before the U-Net's dropout ran.
    dropout_key = jax.random.fold_in(state.step_key(), _DROPOUT_TAG)
    x0 = batch["image"] if to_latent is None else to_latent(first_stage, batch["image"], latent_key)
    dropped = jax.random.bernoulli(drop_key, cfg.label_dropout, batch["label"].shape)
    labels = jnp.where(dropped, num_classes, batch["label"])

    def loss_fn(params):
      model_fn = lambda x_t, t: denoiser.apply({"params": params}, x_t, t, labels, train=True,
                                               rngs={"dropout": dropout_key})
      return objective.denoising_loss(model_fn, schedule, x0, loss_key, cfg.prediction)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return _apply(state, grads, loss, tx, cfg.ema_decay), {"loss": loss}

  return step


def latent_encoder(model) -> Callable:
  """(first_stage {'params', 'scale'}, images in [-1, 1], key) -> scale x a draw from the latent Gaussian.

  The first stage is an argument, not a closed-over constant, so that the denoiser step compiles
  once for a config whatever the autoencoder learned.
  """

  def encode(first_stage, images, key):
    mean, logvar = model.apply({"params": first_stage["params"]}, images, method=model.encode)
    return first_stage["scale"] * (mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype))

  return encode


def latent_scale(latents: jax.Array) -> jax.Array:
  """1 / std of unscaled latents, so the diffusion model sees unit-variance data (Rombach et al., sec. 4.3.2)."""
  return 1.0 / jnp.std(latents)


def guided_model(denoiser, params, labels: jax.Array, num_classes: int, guidance: float) -> Callable:
  """(x_t, t) -> the classifier-free-guided prediction for `labels` (one batched call for both branches)."""
  def model_fn(x_t, t):
    both = denoiser.apply({"params": params}, jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                          jnp.concatenate([jnp.full_like(labels, num_classes), labels]))
    uncond, cond = jnp.split(both, 2)
    return sampling.guided(uncond, cond, guidance)

  return model_fn
