"""Classifier train state and pure train/eval steps (the imbalance benchmark's classifier).

The loss is a per-example weighted cross-entropy, so inverse-frequency class
weighting (the `class_weight` remedy) is the same step with different weights.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class ClassifierState:
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array


def init_classifier_state(model: nn.Module, tx: optax.GradientTransformation, key: jax.Array,
                          image_shape) -> ClassifierState:
  init_key, run_key = jax.random.split(key)
  params = model.init(init_key, jnp.zeros((1,) + tuple(image_shape)), train=False)["params"]
  return ClassifierState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=run_key)


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """sum_i w_i CE_i / sum_i w_i (plain mean when `weights` is None)."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(losses)
  return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(weights), 1e-12)


def make_classifier_train_step(model: nn.Module, tx: optax.GradientTransformation
                               ) -> Callable[[ClassifierState, dict], tuple[ClassifierState, dict]]:
  """`step(state, batch)`; batch has 'image' [B, H, W, C], 'label' [B] and optionally 'weight' [B]."""

  def loss_fn(params, batch, key):
    logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": key})
    loss = weighted_cross_entropy(logits, batch["label"], batch.get("weight"))
    return loss, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

  def train_step(state: ClassifierState, batch: dict) -> tuple[ClassifierState, dict]:
    key = jax.random.fold_in(state.rng, state.step)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch, key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state), metrics

  return train_step


def make_predict_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
  """`predict(params, images) -> logits` in inference mode (no dropout)."""
  return lambda params, images: model.apply({"params": params}, images, train=False)
