"""Train the CNN classifier on uint8 arrays and predict with it (the imbalance benchmark's classifier).

One `ClassifierPrograms` is built per benchmark run and reused for every method
and seed: the train step takes the class weights as an argument (all ones when
unweighted) and the data set lives on the device, so changing the training set
never recompiles anything.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_jax import batching
from gan_jax import parallel
from gan_jax.data import device_dataset
from gan_jax.models import classifier as classifier_lib
from gan_jax.train import classifier_step
from gan_jax.train import loop

INPUT_RANGE = (0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ClassifierPrograms:
  """The jitted functions of one classifier architecture on one mesh.

  Attributes:
    model: the Flax module.
    init: key -> ClassifierState (replicated).
    train_step: (state, batch [1, B, ...], class_weights [C]) -> (state, metrics).
    predict: (params, images [B, H, W, C] in [0, 1]) -> (probabilities [B, C], features [B, hidden]).
    mesh: the ('data',) mesh.
  """
  model: classifier_lib.CNNClassifier
  init: Callable
  train_step: Callable
  predict: Callable
  mesh: jax.sharding.Mesh


def build_programs(config: ml_collections.ConfigDict, num_classes: int, image_shape: Sequence[int],
                   mesh) -> ClassifierPrograms:
  """Compiles-on-first-use programs for `config` (conv_widths, hidden, dropout_rate, learning_rate)."""
  model = classifier_lib.CNNClassifier(num_classes=num_classes, conv_widths=tuple(config.conv_widths),
                                       hidden=config.hidden, dropout_rate=config.dropout_rate)
  tx = optax.adam(config.learning_rate)
  rep = parallel.replicated(mesh)
  init = jax.jit(lambda key: classifier_step.init_classifier_state(model, tx, key, image_shape), out_shardings=rep)
  step = classifier_step.make_classifier_train_step(model, tx)

  def weighted_step(state, batches, class_weights):
    batch = jax.tree.map(lambda x: x[0], batches)
    batch["weight"] = jnp.take(class_weights, batch["label"])
    return step(state, batch)

  train_step = jax.jit(weighted_step, in_shardings=(rep, parallel.batch_sharding(mesh, 1), rep),
                       out_shardings=(rep, rep), donate_argnums=(0,))

  def predict_fn(params, images):
    logits, features = model.apply({"params": params}, images, train=False, return_features=True)
    return jax.nn.softmax(logits), features

  predict = jax.jit(predict_fn, in_shardings=(rep, parallel.batch_sharding(mesh)),
                    out_shardings=(parallel.batch_sharding(mesh), parallel.batch_sharding(mesh)))
  return ClassifierPrograms(model, init, train_step, predict, mesh)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """w_c = N / (C * n_c), so every class carries the same total weight (scikit-learn's 'balanced')."""
  counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes).astype(np.float64)
  if np.any(counts == 0):
    raise ValueError(f"class_weight needs every class present, got counts {counts.astype(int).tolist()}")
  return (counts.sum() / (num_classes * counts)).astype(np.float32)


def train_classifier(programs: ClassifierPrograms, images: np.ndarray, labels: np.ndarray, *, seed: int,
                     num_steps: int, batch_size: int, class_weights: np.ndarray | None = None,
                     log_every: int = 0, name: str = "classifier"):
  """Trains a fresh classifier and returns its parameters.

  Args:
    programs: from `build_programs`.
    images: uint8 [N, H, W, C].
    labels: int [N].
    seed: initialisation and batch-order seed; batches are `batch_order.batch_indices`
      of (seed, step), so equal seeds give equal runs.
    num_steps: optimiser steps.
    batch_size: global batch size.
    class_weights: per-class loss weights [C] (None: all ones).
    log_every: progress line every this many steps (0: only at the end).
    name: label of the progress lines.

  Returns:
    The trained parameters (on the mesh, replicated).
  """
  num_classes = programs.model.num_classes
  weights = np.ones(num_classes, np.float32) if class_weights is None else np.asarray(class_weights, np.float32)
  dataset = device_dataset.DeviceDataset(images, labels, programs.mesh, INPUT_RANGE)
  weights = parallel.replicate(jnp.asarray(weights), programs.mesh)
  step_fn = lambda state, step: programs.train_step(state, dataset.batches([step], batch_size, seed), weights)
  # At most one step in flight: with many fake CPU devices, a deep queue of collective
  # programs can starve XLA:CPU's all-reduce rendezvous (seen as a 40 s "Termination
  # timeout" abort); one step of lookahead keeps the host dispatching while the devices compute.
  result = loop.train(programs.init(jax.random.PRNGKey(seed)), step_fn, num_steps=num_steps, name=name,
                      log_every=log_every, images_per_step=batch_size, one_in_flight=True,
                      describe=lambda s: f"loss={s['loss']:.4f} {s['images_per_sec']:.0f} img/s")
  return result.state.params


def predict(programs: ClassifierPrograms, params, images: np.ndarray, batch_size: int = 1000
            ) -> tuple[np.ndarray, np.ndarray]:
  """Class probabilities [N, C] and hidden features [N, hidden] of uint8 images [N, H, W, C].

  Single-process: every row is fed from this host, in chunks of one compiled shape.
  """
  n_devices = programs.mesh.size
  batch_size = max(n_devices, batch_size - batch_size % n_devices)
  return batching.map_chunks(
      lambda _, rows: programs.predict(params, parallel.shard_batch(images[rows].astype(np.float32) / 255.0,
                                                                    programs.mesh)),
      len(images), batch_size)
