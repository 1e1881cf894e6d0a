"""Classifier train state and the pure train step of the imbalance benchmark's classifier.

One step serves every loss-based remedy: the loss is the cross-entropy of
adjusted logits (`LossConfig.kind`: plain, logit-adjusted, Balanced Softmax or
LDAM; see `gan_jax.losses`), weighted per class by weights that may switch at a
step (deferred re-weighting), optionally on mixup / Remix batches and on
augmented images. What varies at run time (class counts, weights, the switch
step) is an argument, so one compiled step serves every training set.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import losses

PyTree = Any
LOSS_KINDS = ("cross_entropy", "logit_adjusted", "balanced_softmax", "ldam")
AUGMENTS = ("", "translate", "crop_flip")


@flax.struct.dataclass
class ClassifierState:
  """Step, trained parameters, optimiser state, run key, and BatchNorm statistics ({} without BatchNorm)."""
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array
  batch_stats: PyTree = flax.struct.field(default_factory=dict)

  def variables(self) -> dict:
    """The Flax variables of inference: {'params'} and, with BatchNorm, {'batch_stats'}."""
    return {"params": self.params, **({"batch_stats": self.batch_stats} if self.batch_stats else {})}


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Static settings of the classifier's loss and input transforms.

  Attributes:
    kind: one of LOSS_KINDS.
    tau: logit adjustment's temperature.
    max_margin: LDAM's largest margin.
    scale: LDAM's s, applied to cosine logits (the model's cosine head scale is divided out).
    mixup_alpha: > 0 trains on mixup batches, lambda ~ Beta(alpha, alpha) (Zhang et al., ICLR 2018).
    remix_kappa: > 0 applies Remix's label rule (Chou et al., ECCV-W 2020): when the first image's
      class has at least kappa times the second's images and lambda < remix_tau, the label is the
      second's (and symmetrically); 0 keeps mixup's lambda.
    remix_tau: Remix's tau.
    augment: '' (none), 'translate' (random shift by up to `translate_pixels`, zero-filled) or
      'crop_flip' (random crop of the image padded by `crop_padding`, and a horizontal flip).
    translate_pixels: see augment.
    crop_padding: see augment.
  """
  kind: str = "cross_entropy"
  tau: float = 1.0
  max_margin: float = 0.5
  scale: float = 30.0
  mixup_alpha: float = 0.0
  remix_kappa: float = 0.0
  remix_tau: float = 0.5
  augment: str = ""
  translate_pixels: int = 2
  crop_padding: int = 4

  def __post_init__(self):
    if self.kind not in LOSS_KINDS:
      raise ValueError(f"Unknown loss kind '{self.kind}'; choose one of: {', '.join(LOSS_KINDS)}")
    if self.augment not in AUGMENTS:
      raise ValueError(f"Unknown classifier augment '{self.augment}'; choose one of: "
                       f"{', '.join(a or repr('') for a in AUGMENTS)}")


def loss_args(num_classes: int, class_counts=None, weights=None, late_weights=None,
              switch_step: int = -1) -> dict[str, np.ndarray]:
  """The run-time inputs of the loss: counts [C], per-class weights before and after `switch_step`.

  Defaults: counts of 1 (unused by plain cross-entropy), weights of 1, no switch.
  """
  ones = np.ones(num_classes, np.float32)
  weights = ones if weights is None else np.asarray(weights, np.float32)
  return {"class_counts": ones if class_counts is None else np.asarray(class_counts, np.float32),
          "weights": weights, "late_weights": weights if late_weights is None else np.asarray(late_weights, np.float32),
          "switch_step": np.asarray(switch_step if switch_step >= 0 else np.iinfo(np.int32).max, np.int32)}


def class_weights_at(args: dict, step: jax.Array) -> jax.Array:
  """The per-class weights in force at `step`: deferred re-weighting switches at args['switch_step']."""
  return jnp.where(step >= args["switch_step"], args["late_weights"], args["weights"])


def init_classifier_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                          image_shape) -> ClassifierState:
  init_key, run_key = jax.random.split(key)
  variables = model.init(init_key, jnp.zeros((1,) + tuple(image_shape)), train=False)
  params = variables["params"]
  return ClassifierState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=run_key,
                         batch_stats=variables.get("batch_stats", {}))


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """sum_i w_i CE_i / sum_i w_i (plain mean when `weights` is None)."""
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(per_example)
  return jnp.sum(weights * per_example) / jnp.maximum(jnp.sum(weights), 1e-12)


def augment_images(images: jax.Array, key: jax.Array, cfg: LossConfig) -> jax.Array:
  """Per-image random shift (translate) or padded crop and horizontal flip (crop_flip)."""
  if not cfg.augment:
    return images
  n, h, w, c = images.shape
  pad = cfg.translate_pixels if cfg.augment == "translate" else cfg.crop_padding
  shift_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(shift_key, (n, 2), 0, 2 * pad + 1)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
  out = jax.vmap(crop)(padded, offsets)
  if cfg.augment == "crop_flip":
    flip = jax.random.bernoulli(flip_key, 0.5, (n, 1, 1, 1))
    out = jnp.where(flip, out[:, :, ::-1, :], out)
  return out


def mix_batch(images: jax.Array, labels: jax.Array, key: jax.Array, cfg: LossConfig, class_counts: jax.Array):
  """Mixup (and Remix's labels): images lam * x + (1 - lam) * x[perm], with the weight of the first label.

  Returns:
    (mixed images, second labels [B], weight of the first label [B]).
  """
  lam_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, cfg.mixup_alpha, cfg.mixup_alpha)
  perm = jax.random.permutation(perm_key, labels.shape[0])
  mixed = lam * images + (1.0 - lam) * images[perm]
  other = labels[perm]
  first_weight = jnp.full(labels.shape, lam)
  if cfg.remix_kappa > 0:
    ratio = jnp.take(class_counts, labels) / jnp.take(class_counts, other)
    first_weight = jnp.where((ratio >= cfg.remix_kappa) & (lam < cfg.remix_tau), 0.0, first_weight)
    first_weight = jnp.where((ratio <= 1.0 / cfg.remix_kappa) & (1.0 - lam < cfg.remix_tau), 1.0, first_weight)
  return mixed, other, first_weight


def adjusted_logits(logits: jax.Array, labels: jax.Array, cfg: LossConfig, class_counts: jax.Array,
                    cosine_scale: float | None) -> jax.Array:
  """The logits whose plain cross-entropy is the configured loss (for labels `labels`)."""
  if cfg.kind == "logit_adjusted":
    return logits + cfg.tau * losses.log_prior(class_counts)
  if cfg.kind == "balanced_softmax":
    return logits + jnp.log(class_counts)
  if cfg.kind == "ldam":
    cosines = logits / cosine_scale if cosine_scale else logits
    return losses.ldam_logits(cosines, labels, class_counts, cfg.max_margin, cfg.scale)
  return logits


def make_classifier_train_step(model: nn.Module, tx: optax.GradientTransformation, cfg: LossConfig = LossConfig(),
                               frozen_statistics: bool = False) -> Callable[..., tuple[ClassifierState, dict]]:
  """`step(state, batch, args=None)`: batch {'image' [B, H, W, C], 'label' [B]}, args from `loss_args`.

  Args:
    model: the classifier module (`__call__(images, train)`).
    tx: the optimiser.
    cfg: the loss and input transforms.
    frozen_statistics: a model with BatchNorm runs in inference mode (running averages,
      left unchanged), so a head trained on frozen features sees the features of test time (cRT).
  """
  cosine_scale = model.cosine_scale if getattr(model, "head", "linear") == "cosine" else None

  def forward(params, batch_stats, images, dropout_key):
    if not batch_stats:
      return model.apply({"params": params}, images, train=True, rngs={"dropout": dropout_key}), batch_stats
    variables = {"params": params, "batch_stats": batch_stats}
    if frozen_statistics:
      return model.apply(variables, images, train=False), batch_stats
    logits, updated = model.apply(variables, images, train=True, rngs={"dropout": dropout_key},
                                  mutable=["batch_stats"])
    return logits, updated["batch_stats"]

  def loss_fn(params, batch_stats, batch, key, args, step):
    images, labels = batch["image"], batch["label"]
    num_classes = model.num_classes
    if args is None:
      args = loss_args(num_classes)
    dropout_key, mix_key = key, None
    if cfg.augment or cfg.mixup_alpha > 0:
      dropout_key, augment_key, mix_key = jax.random.split(key, 3)
      images = augment_images(images, augment_key, cfg)
    weights = class_weights_at(args, step)
    counts = args["class_counts"]
    parts = [(labels, jnp.ones(labels.shape, jnp.float32))]
    if cfg.mixup_alpha > 0:
      images, other, first = mix_batch(images, labels, mix_key, cfg, counts)
      parts = [(labels, first), (other, 1.0 - first)]
    logits, batch_stats = forward(params, batch_stats, images, dropout_key)
    numerator, denominator = 0.0, 0.0
    for target, share in parts:
      ce = optax.softmax_cross_entropy_with_integer_labels(
          adjusted_logits(logits, target, cfg, counts, cosine_scale), target)
      w = share * jnp.take(weights, target)
      numerator, denominator = numerator + jnp.sum(w * ce), denominator + jnp.sum(w)
    loss = numerator / jnp.maximum(denominator, 1e-12)
    return loss, ({"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}, batch_stats)

  def train_step(state: ClassifierState, batch: dict, args: dict | None = None) -> tuple[ClassifierState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params, state.batch_stats, batch, key,
                                                                     args, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state, batch_stats=batch_stats), metrics

  return train_step


def make_predict_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
  """`predict(variables, images) -> logits` in inference mode (no dropout, BatchNorm running averages)."""
  return lambda variables, images: model.apply(variables, images, train=False)
