"""GAN train state and the pure train step shared by every GAN family.

The step implements Algorithm 1 of Goodfellow et al. (2014): `d_steps`
discriminator updates, each on its own real minibatch, then one generator update.
Family differences are data, not code paths: the loss pair comes from
`gan_jax.losses`, the gradient penalty (WGAN-GP) and the auxiliary classifier
(ACGAN) are switched on by `StepConfig` and the `GAN` description.

StyleGAN2's additions are switches of the same step: lazy R1 on the reals every
`r1_interval` discriminator updates, adaptive discriminator augmentation (ADA) with its
probability p kept in the state, and a 'noise' PRNG stream for the generator (style
mixing, per-pixel noise) that other families ignore. ProGAN's are too: one step per growth
phase (`GAN.stage`), whose fade coefficient follows from the step counter (`fade_start`,
`fade_steps`), and the drift term on the critic's real scores.

Randomness is `fold_in(state.rng, state.step)`, so a restored state replays the
exact noise of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from gan_jax import ada
from gan_jax import augment
from gan_jax import losses
from gan_jax.models import GAN
from gan_jax.models import progan
from gan_jax.train import nonfinite

PyTree = Any
Metrics = dict[str, jax.Array]

# Losses whose discriminator outputs are logits of a probability.
_PROBABILISTIC_LOSSES = ("minimax", "non_saturating")


@flax.struct.dataclass
class GANTrainState:
  """Everything that changes during GAN training; a pure pytree (checkpointable)."""
  step: jax.Array
  g_params: PyTree
  d_params: PyTree
  g_batch_stats: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  rng: jax.Array
  health: dict[str, jax.Array]  # see `nonfinite.guard_nonfinite`
  # Exponential moving average of g_params (StepConfig.g_ema_decay > 0), else None; sample grids and generated images use it.
  g_ema_params: PyTree = None
  # Adaptive augmentation (StepConfig.ada_target > 0): p and the sign(D(real)) tally, see `ada.adapt`; else None.
  ada: dict[str, jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the GAN step.

  Attributes:
    loss: adversarial loss name (see `losses.ADVERSARIAL_LOSSES`).
    d_steps: discriminator updates per generator update (n_critic for WGAN-GP).
    gp_weight: weight of the gradient penalty; 0 disables it.
    aux_weight: weight of the ACGAN class cross-entropy terms.
    g_ema_decay: > 0 keeps an exponential moving average of the generator weights
      (Yazici et al., ICLR 2019), updated after every generator step; the state must
      then be initialised with `init_train_state(..., g_ema=True)`.
    reuse_fakes: the generator update reuses the fakes of the last discriminator update
      (same noise, one G forward pass per step instead of two, as in PyTorch's DCGAN
      example) instead of drawing fresh noise as Algorithm 1 does.
    augment: DiffAugment policy (`gan_jax.augment`, e.g. 'translation,cutout'): every
      image D sees, real or fake, in both players' updates, is transformed first;
      '' leaves D's input (and the random stream) exactly as without it.
    r1_gamma: > 0 adds the R1 penalty gamma / 2 E||grad D(real)||^2 (Mescheder et al., 2018),
      lazily: every `r1_interval`-th discriminator update, scaled by the interval (StyleGAN2).
    r1_interval: discriminator updates between R1 evaluations.
    ada_target: > 0 turns on adaptive discriminator augmentation with this target r_t (0.6 in
      Karras et al., 2020); the state must come from `init_train_state(..., ada_state=True)`.
    ada_interval: generator steps between updates of p.
    ada_kimg: thousands of real images over which p may sweep [0, 1].
    ada_policy: the ADA transformations (see `gan_jax.ada.TRANSFORMS`).
    fade_start: first step of a progressive GAN's fade-in (the phase's first step).
    fade_steps: > 0: the networks and the reals fade in with alpha = (step - fade_start) /
      fade_steps, clipped to [0, 1] (ProGAN); 0: no fade.
    drift_weight: > 0 adds drift_weight * E[D(real)^2] to the critic's loss (ProGAN's 1e-3).
  """
  loss: str = "non_saturating"
  d_steps: int = 1
  gp_weight: float = 0.0
  aux_weight: float = 1.0
  g_ema_decay: float = 0.0
  reuse_fakes: bool = False
  augment: str = ""
  r1_gamma: float = 0.0
  r1_interval: int = 16
  ada_target: float = 0.0
  ada_interval: int = 4
  ada_kimg: int = 500
  ada_policy: str = ada.DEFAULT_POLICY
  fade_start: int = 0
  fade_steps: int = 0
  drift_weight: float = 0.0


def make_optimizer(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
  """Adam, as in DCGAN (lr 2e-4, beta1 0.5) and WGAN-GP (lr 1e-4, betas 0, 0.9)."""
  return optax.adam(learning_rate, b1=b1, b2=b2)


def init_train_state(gan: GAN, g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                     key: jax.Array, image_shape, g_ema: bool = False, ada_state: bool = False) -> GANTrainState:
  """Initialises parameters and optimizer states from one PRNG key (pure; jit-able).

  `g_ema` adds the generator weight average, starting at the initial weights; `ada_state` the
  adaptive augmentation's p (starting at 0).
  """
  g_key, d_key, run_key = jax.random.split(key, 3)
  z = jnp.zeros((2, gan.z_dim), jnp.float32)
  labels = jnp.zeros((2,), jnp.int32)
  images = jnp.zeros((2,) + tuple(image_shape), jnp.float32)
  g_vars = gan.generator.init({"params": g_key}, z, labels, train=False)
  d_vars = gan.discriminator.init({"params": d_key, "dropout": d_key}, images, labels, train=False)
  return GANTrainState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars["params"],
      d_params=d_vars["params"],
      g_batch_stats=g_vars.get("batch_stats", {}),
      g_opt_state=g_tx.init(g_vars["params"]),
      d_opt_state=d_tx.init(d_vars["params"]),
      rng=run_key,
      health=nonfinite.initial_health(),
      g_ema_params=g_vars["params"] if g_ema else None,
      ada=ada.initial_state() if ada_state else None,
  )


def sampling_params(state: GANTrainState) -> PyTree:
  """The generator weights to sample with: the moving average when the run keeps one.

  BatchNorm running statistics come from the online generator (`g_batch_stats`) in
  both cases; with a slow average the two weight sets differ little late in training.
  """
  return state.g_params if state.g_ema_params is None else state.g_ema_params


def update_ema(ema: PyTree, params: PyTree, decay: float) -> PyTree:
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def generate(gan: GAN, g_params: PyTree, g_batch_stats: PyTree, z: jax.Array, labels: jax.Array | None,
             train: bool, noise_key: jax.Array | None = None) -> tuple[jax.Array, PyTree]:
  """Runs G; in training mode BatchNorm uses batch statistics and returns updated running stats.

  `noise_key` feeds the generator's 'noise' stream in training (StyleGAN2's style mixing and
  per-pixel noise); generators without random layers ignore it.
  """
  variables = {"params": g_params, "batch_stats": g_batch_stats}
  labels = labels if gan.conditional else None
  if not train:
    return gan.generator.apply(variables, z, labels, train=False), g_batch_stats
  rngs = {} if noise_key is None else {"noise": noise_key}
  images, updates = gan.generator.apply(variables, z, labels, train=True, mutable=["batch_stats"], rngs=rngs)
  return images, updates.get("batch_stats", g_batch_stats)


def _noise_key(z_key: jax.Array) -> jax.Array:
  """The generator's 'noise' stream of a fake batch, derived from (not equal to) its z key."""
  return jax.random.fold_in(z_key, 0x401CE)


def _discriminate(gan: GAN, d_params: PyTree, images: jax.Array, labels: jax.Array, key: jax.Array,
                  augment_policy: str = "", ada_p: jax.Array | None = None, ada_policy: str = ada.DEFAULT_POLICY):
  if augment_policy:
    augment_key, key = jax.random.split(key)
    images = augment.diff_augment(images, augment_key, augment_policy)
  if ada_p is not None:
    ada_key, key = jax.random.split(jax.random.fold_in(key, 0xADA))
    images = ada.ada_augment(images, ada_key, ada_p, ada_policy)
  labels_in = labels if gan.d_takes_labels else None
  return gan.discriminator.apply({"params": d_params}, images, labels_in, train=True, rngs={"dropout": key})


def _d_output_summary(loss: str, logits: jax.Array) -> jax.Array:
  """Mean D(x) as a probability for logit losses, the raw mean score otherwise."""
  return jnp.mean(jax.nn.sigmoid(logits)) if loss in _PROBABILISTIC_LOSSES else jnp.mean(logits)


def _discriminator_objective(d_params, real, labels, fake, key, update_index=None, ada_p=None, *, gan: GAN,
                             cfg: StepConfig):
  """Discriminator loss on one real and one fake minibatch, and its metrics.

  `update_index` counts discriminator updates (lazy R1 fires when it is a multiple of the
  interval); `ada_p` is the adaptive augmentation's probability (None: no ADA).
  """
  d_loss_fn, _ = losses.get_adversarial_losses(cfg.loss)
  dropout_key, gp_key = jax.random.split(key)
  batch = real.shape[0]
  d_input = functools.partial(_discriminate, gan, d_params, augment_policy=cfg.augment, ada_p=ada_p,
                              ada_policy=cfg.ada_policy)
  # One pass over [real; fake]: D has no batch statistics, so this equals two passes.
  logits, class_logits = d_input(jnp.concatenate([real, fake]), jnp.concatenate([labels, labels]), dropout_key)
  real_logits, fake_logits = logits[:batch], logits[batch:]
  adversarial = d_loss_fn(real_logits, fake_logits)
  total = adversarial
  metrics = {"d_adversarial": adversarial,
             "d_real": _d_output_summary(cfg.loss, real_logits),
             "d_fake": _d_output_summary(cfg.loss, fake_logits)}
  if ada_p is not None:
    metrics["d_real_sign"] = jnp.mean(jnp.sign(real_logits))  # ADA's over-fitting measure r_t
  if cfg.drift_weight > 0:
    drift = progan.drift_penalty(real_logits, cfg.drift_weight)
    total = total + drift
    metrics["drift"] = drift
  if cfg.gp_weight > 0:
    # The interpolation draws from gp_key itself, so the augmented critic takes a derived key.
    critic_key = jax.random.fold_in(gp_key, 1) if cfg.augment else gp_key
    critic = lambda x: d_input(x, labels, critic_key)[0]
    penalty = losses.gradient_penalty(critic, real, fake, gp_key)
    total = total + cfg.gp_weight * penalty
    metrics["gradient_penalty"] = penalty
  if cfg.r1_gamma > 0:
    critic = lambda x: d_input(x, labels, jax.random.fold_in(gp_key, 2))[0]
    penalty = jax.lax.cond(update_index % cfg.r1_interval == 0,
                           lambda: losses.r1_penalty(critic, real, cfg.r1_gamma, cfg.r1_interval),
                           lambda: jnp.zeros((), jnp.float32))
    total = total + penalty
    metrics["r1_penalty"] = penalty
  if gan.aux_classifier:
    aux_real = losses.auxiliary_classifier_loss(class_logits[:batch], labels)
    aux_fake = losses.auxiliary_classifier_loss(class_logits[batch:], labels)
    total = total + cfg.aux_weight * (aux_real + aux_fake)
    metrics["d_aux_real"] = aux_real
    metrics["d_aux_fake"] = aux_fake
    metrics["d_class_accuracy"] = jnp.mean(jnp.argmax(class_logits[:batch], -1) == labels)
  metrics["d_loss"] = total
  return total, metrics


def generator_loss(fake, d_params, labels, dropout_key, ada_p=None, *, gan: GAN, cfg: StepConfig):
  """The generator's loss on generated images (D's verdict, plus the ACGAN class term), and metrics."""
  _, g_loss_fn = losses.get_adversarial_losses(cfg.loss)
  logits, class_logits = _discriminate(gan, d_params, fake, labels, dropout_key, cfg.augment, ada_p, cfg.ada_policy)
  adversarial = g_loss_fn(logits)
  total = adversarial
  metrics = {"g_adversarial": adversarial}
  if gan.aux_classifier:
    aux = losses.auxiliary_classifier_loss(class_logits, labels)
    total = total + cfg.aux_weight * aux
    metrics["g_aux"] = aux
  metrics["g_loss"] = total
  return total, metrics


def _generator_objective(g_params, g_batch_stats, d_params, labels, key, ada_p=None, *, gan: GAN,
                         cfg: StepConfig):
  """Generator loss on one fresh noise batch; returns updated BatchNorm statistics too."""
  z_key, dropout_key = jax.random.split(key)
  z = jax.random.normal(z_key, (labels.shape[0], gan.z_dim), jnp.float32)
  fake, new_batch_stats = generate(gan, g_params, g_batch_stats, z, labels, train=True, noise_key=_noise_key(z_key))
  total, metrics = generator_loss(fake, d_params, labels, dropout_key, ada_p, gan=gan, cfg=cfg)
  return total, (metrics, new_batch_stats)


def generator_grads_from_fakes(fake, g_vjp, d_params, labels, dropout_key, ada_p=None, *, gan: GAN,
                               cfg: StepConfig):
  """Generator gradients from fakes already generated, through G's saved backward pass.

  Equals jax.grad of `generator_loss(G(z))` with respect to G's parameters (tested),
  without running G's forward pass again: the chain rule splits at the images.
  """
  (_, metrics), fake_grad = jax.value_and_grad(generator_loss, has_aux=True)(
      fake, d_params, labels, dropout_key, ada_p, gan=gan, cfg=cfg)
  (grads,) = g_vjp(fake_grad)
  return grads, metrics


def make_train_step(gan: GAN, cfg: StepConfig, g_tx: optax.GradientTransformation,
                    d_tx: optax.GradientTransformation) -> Callable[[GANTrainState, dict], tuple[GANTrainState, Metrics]]:
  """Builds the pure `train_step(state, batch) -> (state, metrics)` for one GAN.

  `batch["image"]` is [d_steps, B, H, W, C] and `batch["label"]` is [d_steps, B]:
  each discriminator update sees its own real minibatch. Generated images use the
  real minibatch's labels, so conditional models see the data's class prior in
  both players' updates (a uniform fake prior would let D read "rare label" as "fake").
  """
  def train_step(state: GANTrainState, batch: dict) -> tuple[GANTrainState, Metrics]:
    old_state = state
    images, labels = batch["image"], batch["label"]
    if images.shape[0] != cfg.d_steps:
      raise ValueError(f"batch has {images.shape[0]} discriminator minibatches, config d_steps={cfg.d_steps}")
    fade, gan_now = {}, gan
    if cfg.fade_steps > 0:
      alpha = progan.fade_alpha(state.step - cfg.fade_start, cfg.fade_steps)
      gan_now = gan.with_alpha(alpha)
      images = jax.vmap(lambda x: gan.fade_reals(x, alpha))(images)
      fade = {"fade_alpha": alpha}
    elif gan.stage is not None:  # a progressive GAN's phase without a fade: logged too, so every phase
      fade = {"fade_alpha": jnp.ones((), jnp.float32)}  # has the same metrics
    g_objective, fake_noise, ada_p, d_update = _players(gan_now, cfg, d_tx)
    step_key = jax.random.fold_in(state.rng, state.step)
    d_key, g_key = jax.random.split(step_key)
    # A Python loop, not lax.scan: d_steps is small and static, and XLA:CPU lowers
    # convolution weight gradients inside a while loop to a generic emitter that
    # ran DCGAN-MNIST 8x slower (42 vs 353 images/s, benchmarks/step_benchmark.py).
    per_update = []
    fresh_updates = cfg.d_steps - 1 if cfg.reuse_fakes else cfg.d_steps
    if cfg.ada_target > 0 and state.ada is None:
      raise ValueError("StepConfig.ada_target > 0 needs a state made by init_train_state(..., ada_state=True)")
    update_index = lambda k: state.step * cfg.d_steps + k
    for k in range(fresh_updates):
      state, metrics_k = d_update(state, images[k], labels[k], jax.random.fold_in(d_key, k), update_index(k))
      per_update.append(metrics_k)
    if cfg.reuse_fakes:
      # The last D update draws the same noise as without reuse_fakes; G's forward pass is
      # kept (jax.vjp) and its backward pass reused by the generator update.
      last_key = jax.random.fold_in(d_key, cfg.d_steps - 1)
      z_key = jax.random.split(last_key)[0]
      z = fake_noise(z_key, images.shape[1])
      fake, g_vjp, batch_stats = jax.vjp(
          lambda p: generate(gan_now, p, state.g_batch_stats, z, labels[-1], train=True,
                             noise_key=_noise_key(z_key)),
          state.g_params, has_aux=True)
      state, metrics_k = d_update(state, images[-1], labels[-1], last_key, update_index(cfg.d_steps - 1), fake=fake)
      per_update.append(metrics_k)
    d_metrics = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *per_update)

    if cfg.reuse_fakes:
      grads, g_metrics = generator_grads_from_fakes(fake, g_vjp, state.d_params, labels[-1],
                                                    jax.random.split(g_key)[1], ada_p(state), gan=gan_now, cfg=cfg)
    else:
      grads, (g_metrics, batch_stats) = jax.grad(g_objective, has_aux=True)(
          state.g_params, state.g_batch_stats, state.d_params, labels[-1], g_key, ada_p(state))
    updates, g_opt_state = g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    state = state.replace(step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
                          g_batch_stats=batch_stats)
    if cfg.g_ema_decay > 0:
      if state.g_ema_params is None:
        raise ValueError("StepConfig.g_ema_decay > 0 needs a state made by init_train_state(..., g_ema=True)")
      state = state.replace(g_ema_params=update_ema(state.g_ema_params, g_params, cfg.g_ema_decay))
    if cfg.ada_target > 0:
      g_metrics["ada_p"] = state.ada["p"]
      state = state.replace(ada=ada.adapt(state.ada, d_metrics["d_real_sign"], images.shape[0] * images.shape[1],
                                          old_state.step, target=cfg.ada_target,
                                          interval=cfg.ada_interval, adjust_images=cfg.ada_kimg * 1000))
    return nonfinite.guard_nonfinite(old_state, state, {**d_metrics, **g_metrics, **fade})

  return train_step


def _players(gan: GAN, cfg: StepConfig, d_tx: optax.GradientTransformation):
  """The step's pieces for one (possibly faded) GAN: G's objective, the fake noise, ADA's p, a D update."""
  d_objective = functools.partial(_discriminator_objective, gan=gan, cfg=cfg)
  g_objective = functools.partial(_generator_objective, gan=gan, cfg=cfg)
  fake_noise = lambda z_key, batch: jax.random.normal(z_key, (batch, gan.z_dim), jnp.float32)
  ada_p = lambda state: state.ada["p"] if cfg.ada_target > 0 else None

  def d_update(state: GANTrainState, real, labels, key, update_index, fake=None) -> tuple[GANTrainState, Metrics]:
    z_key, d_key = jax.random.split(key)
    if fake is None:
      # Fakes come from G in training mode, like in the generator update; its
      # running statistics are updated only by the generator step.
      fake, _ = generate(gan, state.g_params, state.g_batch_stats, fake_noise(z_key, real.shape[0]), labels,
                         train=True, noise_key=_noise_key(z_key))
    fake = jax.lax.stop_gradient(fake)
    grads, metrics = jax.grad(d_objective, has_aux=True)(state.d_params, real, labels, fake, d_key, update_index,
                                                         ada_p(state))
    updates, d_opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
    state = state.replace(d_params=optax.apply_updates(state.d_params, updates), d_opt_state=d_opt_state)
    return state, metrics

  return g_objective, fake_noise, ada_p, d_update
