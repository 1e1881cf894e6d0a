"""Translation models, their train state and the pure train step of pix2pix and CycleGAN.

A `Translator` names its generators by direction ('ab': A -> B, 'ba': B -> A) and its
discriminators by the domain they judge ('a', 'b'); the method record (`METHODS`)
says which exist and what the objective is:

* pix2pix (Isola et al., 2017): G_ab and a discriminator of (input, output) pairs;
  G minimises gan_weight * L_GAN(D(a, G(a))) + l1_weight * |G(a) - b|_1 (lambda = 100).
* CycleGAN (Zhu et al., 2017): G_ab, G_ba, D_a, D_b; G minimises
  gan_weight * (L_GAN(D_b(G_ab(a))) + L_GAN(D_a(G_ba(b))))
  + cycle_weight * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)
  + cycle_weight * identity_weight * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1);
  each discriminator sees its domain's real images against generated ones drawn
  through a `HistoryPool`.

One step is one generator update, then one discriminator update on the same
(detached) generated images, as CycleGAN's reference does; pix2pix's reference
updates D first, half a step earlier. Randomness is fold_in(state.rng, state.step),
so a restored run replays the exact dropout masks and pool draws.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gan_jax import losses
from gan_jax.models import translation as nets
from gan_jax.train import nonfinite
from gan_jax.translation import augment
from gan_jax.translation import pool as pool_lib

PyTree = Any
GENERATORS = ("unet", "resnet")
_JITTER_TAG = 0x1177


@dataclasses.dataclass(frozen=True)
class Method:
  """What a translation method trains.

  Attributes:
    name: registry name (config.method).
    directions: generators, named source+target domain.
    critics: discriminators, named by the domain they judge.
    paired: whether training needs aligned (a, b) pairs.
    conditional_critic: the discriminator judges (a, b) pairs stacked on channels.
  """
  name: str
  directions: tuple[str, ...]
  critics: tuple[str, ...]
  paired: bool
  conditional_critic: bool


METHODS = {
    "pix2pix": Method("pix2pix", ("ab",), ("b",), paired=True, conditional_critic=True),
    "cyclegan": Method("cyclegan", ("ab", "ba"), ("a", "b"), paired=False, conditional_critic=False),
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f"Unknown method '{name}'; choose one of: {', '.join(METHODS)}")
  return METHODS[name]


@dataclasses.dataclass(frozen=True)
class Translator:
  """The networks of one method for images of `side` px with `channels` {'a': Ca, 'b': Cb}."""
  method: Method
  generators: dict[str, nn.Module]
  critics: dict[str, nn.Module]
  side: int
  channels: dict[str, int]

  def critic_input_shape(self, domain: str) -> tuple[int, int, int]:
    extra = self.channels["a"] if self.method.conditional_critic else 0
    return (self.side, self.side, self.channels[domain] + extra)


def build_translator(method: str, *, side: int, channels_a: int, channels_b: int, generator: str = "",
                     width_g: int = 64, width_d: int = 64, patch_size: int = 70, dropout_blocks: int = 3,
                     num_blocks: int = 0) -> Translator:
  """Assembles a method's networks; raises ValueError for a size or setting they do not support.

  Args:
    method: a METHODS name.
    side: image side in pixels (square images).
    channels_a: channels of domain A.
    channels_b: channels of domain B.
    generator: 'unet' or 'resnet'; '' takes the paper's (U-Net for pix2pix, ResNet for CycleGAN).
    width_g: generator width (64 in the papers).
    width_d: discriminator width (64 in the papers).
    patch_size: the PatchGAN's receptive field (one of `nets.PATCH_SIZES`).
    dropout_blocks: U-Net decoder blocks with dropout.
    num_blocks: ResNet blocks (0: 6 up to 128 px, 9 from 256 px).
  """
  record = get_method(method)
  generator = generator or ("unet" if record.paired else "resnet")
  if generator not in GENERATORS:
    raise ValueError(f"Unknown generator '{generator}'; choose one of: {', '.join(GENERATORS)}")
  if generator == "unet":
    nets.unet_depth(side)
  else:
    nets.check_resnet_size(side)
  num_layers = nets.patch_num_layers(patch_size)
  channels = {"a": channels_a, "b": channels_b}

  def make_generator(direction: str) -> nn.Module:
    out = channels[direction[1]]
    if generator == "unet":
      return nets.UNetGenerator(out, width_g, dropout_blocks)
    return nets.ResnetGenerator(out, width_g, num_blocks)

  return Translator(record, {d: make_generator(d) for d in record.directions},
                    {c: nets.PatchDiscriminator(width_d, num_layers) for c in record.critics}, side, channels)


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss weights of the step (static).

  Attributes:
    loss: adversarial loss name (`losses.ADVERSARIAL_LOSSES`): pix2pix's 'non_saturating',
      CycleGAN's 'least_squares'.
    gan_weight: weight of the generators' adversarial terms. This project's least-squares
      generator loss is Mao et al.'s 0.5 * (D - 1)^2; CycleGAN's reference uses (D - 1)^2,
      which gan_weight = 2 reproduces.
    l1_weight: pix2pix's lambda_L1.
    cycle_weight: CycleGAN's lambda.
    identity_weight: CycleGAN's identity term, as a fraction of cycle_weight (0.5); used
      only when A and B have the same channels.
  """
  loss: str = "non_saturating"
  gan_weight: float = 1.0
  l1_weight: float = 100.0
  cycle_weight: float = 10.0
  identity_weight: float = 0.5


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Training-time augmentation of the batches (`augment.jitter_batch`): random crops of enlarged images, mirrors."""
  jitter: bool = False
  flip: bool = False


@flax.struct.dataclass
class TranslationState:
  """Everything that changes while training a translator; a pure pytree (checkpointable)."""
  step: jax.Array
  g_params: PyTree  # {direction: params}
  d_params: PyTree  # {domain: params}
  g_opt_state: PyTree
  d_opt_state: PyTree
  rng: jax.Array
  pools: dict[str, pool_lib.HistoryPool]  # {domain: pool} (CycleGAN; empty for pix2pix)
  health: dict[str, jax.Array]


def make_optimizer(learning_rate: float, b1: float, b2: float, num_steps: int,
                   decay_steps: int) -> optax.GradientTransformation:
  """Adam with the papers' schedule: constant, then linearly to zero over the last `decay_steps`."""
  constant = max(num_steps - decay_steps, 0)
  schedule = optax.join_schedules(
      [optax.constant_schedule(learning_rate), optax.linear_schedule(learning_rate, 0.0, max(decay_steps, 1))],
      [constant])
  return optax.adam(schedule, b1=b1, b2=b2)


def init_state(translator: Translator, g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               key: jax.Array, pool_size: int) -> TranslationState:
  """Parameters, optimizer states and empty pools from one key (pure; jit-able)."""
  g_key, d_key, run_key = jax.random.split(key, 3)
  side, channels = translator.side, translator.channels
  g_params = {d: module.init({"params": jax.random.fold_in(g_key, i)},
                             jnp.zeros((1, side, side, channels[d[0]])))["params"]
              for i, (d, module) in enumerate(sorted(translator.generators.items()))}
  d_params = {c: module.init({"params": jax.random.fold_in(d_key, i)},
                             jnp.zeros((1,) + translator.critic_input_shape(c)))["params"]
              for i, (c, module) in enumerate(sorted(translator.critics.items()))}
  pools = {} if translator.method.paired else {
      c: pool_lib.init_pool(pool_size, (side, side, channels[c])) for c in translator.method.critics}
  return TranslationState(jnp.zeros((), jnp.int32), g_params, d_params, g_tx.init(g_params), d_tx.init(d_params),
                          run_key, pools, nonfinite.initial_health())


def translate(translator: Translator, g_params: PyTree, direction: str, images: jax.Array, train: bool = False,
              key: jax.Array | None = None) -> jax.Array:
  """Generator `direction` applied to images in [-1, 1]; `train` switches dropout on (needs `key`)."""
  rngs = {"dropout": key} if train else {}
  return translator.generators[direction].apply({"params": g_params[direction]}, images, train=train, rngs=rngs)


def _critic(translator: Translator, d_params: PyTree, domain: str, images: jax.Array, source: jax.Array):
  if translator.method.conditional_critic:
    images = jnp.concatenate([source, images], axis=-1)
  return translator.critics[domain].apply({"params": d_params[domain]}, images)


def _pix2pix_generator(translator, objective, g_loss_fn, g_params, d_params, a, b, key):
  fake_b = translate(translator, g_params, "ab", a, train=True, key=key)
  adversarial = g_loss_fn(_critic(translator, d_params, "b", fake_b, a))
  l1 = losses.l1_loss(fake_b, b)
  total = objective.gan_weight * adversarial + objective.l1_weight * l1
  return total, ({"g_gan": adversarial, "g_l1": l1}, {"b": fake_b})


def _cyclegan_generator(translator, objective, g_loss_fn, g_params, d_params, a, b, key):
  keys = jax.random.split(key, 6)
  run = lambda direction, x, k: translate(translator, g_params, direction, x, train=True, key=k)
  fake_b, fake_a = run("ab", a, keys[0]), run("ba", b, keys[1])
  cycle = (losses.cycle_consistency_loss(run("ba", fake_b, keys[2]), a)
           + losses.cycle_consistency_loss(run("ab", fake_a, keys[3]), b))
  adversarial = (g_loss_fn(_critic(translator, d_params, "b", fake_b, a))
                 + g_loss_fn(_critic(translator, d_params, "a", fake_a, b)))
  total = objective.gan_weight * adversarial + objective.cycle_weight * cycle
  metrics = {"g_gan": adversarial, "g_cycle": cycle}
  if objective.identity_weight > 0 and translator.channels["a"] == translator.channels["b"]:
    identity = (losses.cycle_consistency_loss(run("ab", b, keys[4]), b)
                + losses.cycle_consistency_loss(run("ba", a, keys[5]), a))
    total = total + objective.cycle_weight * objective.identity_weight * identity
    metrics["g_identity"] = identity
  return total, (metrics, {"b": fake_b, "a": fake_a})


_GENERATOR_OBJECTIVES = {"pix2pix": _pix2pix_generator, "cyclegan": _cyclegan_generator}


def make_train_step(translator: Translator, objective: Objective, g_tx: optax.GradientTransformation,
                    d_tx: optax.GradientTransformation, jitter: Jitter = Jitter()) -> Callable:
  """`train_step(state, batches) -> (state, metrics)`; batches are {'a', 'b': [1, B, H, W, C]} in [-1, 1]."""
  d_loss_fn, g_loss_fn = losses.get_adversarial_losses(objective.loss)
  generator_objective = _GENERATOR_OBJECTIVES[translator.method.name]
  sources = {"a": "b", "b": "a"}  # a critic of domain d judges translations from the other domain

  def critic_objective(d_params, real, shown):
    total, metrics = 0.0, {}
    for domain in translator.method.critics:
      real_logits = _critic(translator, d_params, domain, real[domain], real[sources[domain]])
      fake_logits = _critic(translator, d_params, domain, shown[domain], real[sources[domain]])
      loss = d_loss_fn(real_logits, fake_logits)
      total = total + loss
      metrics[f"d_{domain}_real"] = jnp.mean(real_logits)
      metrics[f"d_{domain}_fake"] = jnp.mean(fake_logits)
    return total, metrics

  def train_step(state: TranslationState, batches: dict[str, jax.Array]):
    key = jax.random.fold_in(state.rng, state.step)
    g_key, pool_key = jax.random.split(key)
    jitter_key = jax.random.fold_in(key, _JITTER_TAG)  # apart from the other draws, which it leaves unchanged
    batch = augment.jitter_batch({"a": batches["a"][0], "b": batches["b"][0]}, jitter_key,
                                 paired=translator.method.paired, jitter=jitter.jitter, flip=jitter.flip)
    a, b = batch["a"], batch["b"]
    grad_g = jax.value_and_grad(
        lambda p: generator_objective(translator, objective, g_loss_fn, p, state.d_params, a, b, g_key), has_aux=True)
    (g_loss, (g_metrics, fakes)), g_grads = grad_g(state.g_params)
    pools, shown = dict(state.pools), {}
    for i, domain in enumerate(translator.method.critics):
      if domain in pools:
        pools[domain], shown[domain] = pool_lib.query(pools[domain], fakes[domain], jax.random.fold_in(pool_key, i))
      else:
        shown[domain] = jax.lax.stop_gradient(fakes[domain])
    grad_d = jax.value_and_grad(critic_objective, has_aux=True)
    (d_loss, d_metrics), d_grads = grad_d(state.d_params, {"a": a, "b": b}, shown)

    def updated() -> TranslationState:
      # D's gradients were taken at the old D and G's fakes: both updates apply to the old state.
      g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
      d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
      return state.replace(g_params=optax.apply_updates(state.g_params, g_updates),
                           d_params=optax.apply_updates(state.d_params, d_updates), g_opt_state=g_opt_state,
                           d_opt_state=d_opt_state, pools=pools)

    # The pools hold the generators' outputs, finite when G's loss is.
    metrics = {"g_loss": g_loss, "d_loss": d_loss, **g_metrics, **d_metrics}
    return nonfinite.guard_update(state, updated, metrics, (g_grads, d_grads))

  return train_step
