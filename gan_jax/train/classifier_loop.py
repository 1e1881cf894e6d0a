"""Train the CNN classifier on uint8 arrays and predict with it (the imbalance benchmark's classifier).

The recipe (`Recipe`: optimiser, weight decay, learning-rate schedule, input
augmentation) is the same for every method; what a method changes is the loss
(`classifier_step.LossConfig`), the head, and the run-time loss inputs (class
counts, weights, the deferred re-weighting step). The learning rate of each step
is an input of the compiled step, computed here from the schedule, so one
program serves every step count; the data set lives on the devices, so
changing the training set never recompiles anything either.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_jax import batching
from gan_jax import checks
from gan_jax import fs
from gan_jax import parallel
from gan_jax.data import batch_order
from gan_jax.data import device_dataset
from gan_jax.models import classifier as classifier_lib
from gan_jax.models import resnet
from gan_jax.train import classifier_step
from gan_jax.train import loop

INPUT_RANGE = (0.0, 1.0)
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step")
# The head cRT re-trains: the last layer (Flax names the CNN's second dense layer Dense_1).
HEAD_LAYERS = ("Dense_1", "cosine_head")


def _cnn(config: ml_collections.ConfigDict, num_classes: int, head: str) -> classifier_lib.CNNClassifier:
  return classifier_lib.CNNClassifier(num_classes=num_classes, conv_widths=tuple(config.conv_widths),
                                      hidden=config.hidden, dropout_rate=config.dropout_rate, head=head)


def _resnet(config: ml_collections.ConfigDict, num_classes: int, head: str) -> resnet.ResNetClassifier:
  # 6 * resnet_blocks + 2 layers: 5 blocks per stage is the ResNet-32 of Cao et al.
  return resnet.ResNetClassifier(num_classes=num_classes, blocks_per_stage=config.get("resnet_blocks", 5), head=head)


# config.classifier.model -> builder(classifier config, num_classes, head).
MODELS: dict[str, Callable] = {"cnn": _cnn, "resnet": _resnet}


def make_model(config: ml_collections.ConfigDict, num_classes: int, head: str = "linear"):
  """The classifier module that `config.model` (default 'cnn') names."""
  name = config.get("model", "cnn")
  checks.one_of(name, tuple(MODELS), "classifier.model")
  return MODELS[name](config, num_classes, head)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How every classifier of a benchmark is trained.

  Attributes:
    optimizer: 'sgd' (momentum, coupled weight decay, as Cao et al. train) or 'adam'.
    learning_rate: peak learning rate.
    momentum: SGD momentum.
    weight_decay: L2 coefficient added to the gradient.
    schedule: 'constant', or 'step': linear warm-up over `warmup_steps`, then the rate
      multiplied by `decay_factor` at each fraction `decay_at` of the run.
    warmup_steps: see schedule.
    decay_at: see schedule (the first one is where deferred re-weighting starts).
    decay_factor: see schedule.
    augment: the input augmentation (see classifier_step.LossConfig.augment).
  """
  optimizer: str = "sgd"
  learning_rate: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 2e-4
  schedule: str = "step"
  warmup_steps: int = 50
  decay_at: tuple[float, ...] = (0.8, 0.9)
  decay_factor: float = 0.01
  augment: str = "translate"

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, prefix: str = "classifier.") -> "Recipe":
    recipe = cls(optimizer=config.optimizer, learning_rate=float(config.learning_rate),
                 momentum=float(config.momentum), weight_decay=float(config.weight_decay), schedule=config.schedule,
                 warmup_steps=int(config.warmup_steps),
                 decay_at=tuple(float(v) for v in checks.parse_list(config.decay_at)),
                 decay_factor=float(config.decay_factor), augment=config.augment)
    recipe.validate(prefix)
    return recipe

  def validate(self, prefix: str = "") -> None:
    checks.one_of(self.optimizer, OPTIMIZERS, prefix + "optimizer")
    checks.one_of(self.schedule, SCHEDULES, prefix + "schedule")
    checks.one_of(self.augment, classifier_step.AUGMENTS, prefix + "augment")
    checks.positive_number(self.learning_rate, prefix + "learning_rate")
    checks.in_range(self.momentum, prefix + "momentum", 0.0, 1.0, high_open=True)
    checks.non_negative(self.weight_decay, prefix + "weight_decay")
    checks.non_negative(self.warmup_steps, prefix + "warmup_steps")
    checks.in_range(self.decay_factor, prefix + "decay_factor", 0.0, 1.0, low_open=True)
    for i, fraction in enumerate(self.decay_at):
      checks.in_range(fraction, f"{prefix}decay_at[{i}]", 0.0, 1.0, low_open=True, high_open=True)
    if list(self.decay_at) != sorted(self.decay_at):
      raise ValueError(f"config.{prefix}decay_at must increase, got {self.decay_at}")

  def decay_steps(self, num_steps: int) -> list[int]:
    return [int(round(f * num_steps)) for f in self.decay_at] if self.schedule == "step" else []

  def learning_rate_at(self, step: int, num_steps: int) -> float:
    """The learning rate of step `step` (0-based) of a `num_steps` run."""
    if self.schedule == "constant":
      return self.learning_rate
    rate = self.learning_rate * min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else self.learning_rate
    return rate * self.decay_factor ** sum(step >= s for s in self.decay_steps(num_steps))

  def direction(self) -> optax.GradientTransformation:
    """The optimiser without its learning rate (the step multiplies by -learning_rate itself)."""
    parts = [optax.add_decayed_weights(self.weight_decay)] if self.weight_decay else []
    parts.append(optax.trace(decay=self.momentum) if self.optimizer == "sgd" else optax.scale_by_adam())
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class ClassifierPrograms:
  """The jitted functions of one classifier architecture, loss and trainable part on one mesh.

  Attributes:
    model: the Flax module.
    init: key -> ClassifierState (replicated).
    train_step: (state, batches [1, B, ...], step inputs) -> (state, metrics).
    stacked_train_step: the same step of K classifiers at once, vmapped over a leading member axis:
      (states [K, ...], batches [K, 1, B, ...], step inputs) -> (states, metrics averaged over members).
    predict: (variables, images [B, H, W, C] in [0, 1]) -> (probabilities [B, C], features [B, hidden]).
    mesh: the ('data',) mesh.
    recipe: the optimiser and schedule.
    loss: the loss configuration.
  """
  model: Any
  init: Callable
  train_step: Callable
  stacked_train_step: Callable
  predict: Callable
  mesh: jax.sharding.Mesh
  recipe: Recipe
  loss: classifier_step.LossConfig


def _is_head(path) -> bool:
  return any(getattr(k, "key", None) in HEAD_LAYERS for k in path)


def build_programs(config: ml_collections.ConfigDict, num_classes: int, image_shape: Sequence[int], mesh, *,
                   recipe: Recipe | None = None, loss: classifier_step.LossConfig | None = None,
                   head: str = "linear", head_only: bool = False) -> ClassifierPrograms:
  """Compile-on-first-use programs for the architecture of `config` (`model` and its fields).

  Args:
    config: the classifier section (architecture and, unless `recipe` is given, the recipe).
    num_classes: output classes.
    image_shape: (H, W, C).
    mesh: the ('data',) mesh.
    recipe: the training recipe (default: read from `config`).
    loss: the loss configuration (default: plain cross-entropy with the recipe's augmentation).
    head: 'linear' or 'cosine'.
    head_only: train only the last layer; every other parameter, and BatchNorm's statistics,
      stay bit-identical (cRT).
  """
  recipe = recipe or Recipe.from_config(config)
  loss = loss or classifier_step.LossConfig(augment=recipe.augment)
  model = make_model(config, num_classes, head)
  direction = recipe.direction()
  rep = parallel.replicated(mesh)
  init = jax.jit(lambda key: classifier_step.init_classifier_state(model, direction, key, image_shape),
                 out_shardings=rep)

  def with_rate(rate):
    # The learning rate is an input: -rate * direction, with the frozen layers' updates zeroed.
    def update(updates, state, params=None):
      updates, state = direction.update(updates, state, params)
      scale = lambda path, u: (-rate * u) if (not head_only or _is_head(path)) else jnp.zeros_like(u)
      return jax.tree_util.tree_map_with_path(scale, updates), state
    return optax.GradientTransformation(direction.init, update)

  def weighted_step(state, batches, inputs):
    batch = jax.tree.map(lambda x: x[0], batches)
    step = classifier_step.make_classifier_train_step(model, with_rate(inputs["learning_rate"]), loss,
                                                      frozen_statistics=head_only)
    return step(state, batch, inputs)

  train_step = jax.jit(weighted_step, in_shardings=(rep, parallel.batch_sharding(mesh, 1), rep),
                       out_shardings=(rep, rep), donate_argnums=(0,))

  def stacked_step(states, batches, inputs):
    states, metrics = jax.vmap(weighted_step, in_axes=(0, 0, None))(states, batches, inputs)
    return states, jax.tree.map(jnp.mean, metrics)

  stacked_train_step = jax.jit(stacked_step, in_shardings=(rep, parallel.batch_sharding(mesh, 2), rep),
                               out_shardings=(rep, rep), donate_argnums=(0,))

  def predict_fn(variables, images):
    logits, features = model.apply(variables, images, train=False, return_features=True)
    return jax.nn.softmax(logits), features

  predict = jax.jit(predict_fn, in_shardings=(rep, parallel.batch_sharding(mesh)),
                    out_shardings=(parallel.batch_sharding(mesh), parallel.batch_sharding(mesh)))
  return ClassifierPrograms(model, init, train_step, stacked_train_step, predict, mesh, recipe, loss)


def train_classifier(programs: ClassifierPrograms, images: np.ndarray, labels: np.ndarray, *, seed: int,
                     num_steps: int, batch_size: int, inputs: dict | None = None, log_every: int = 0,
                     name: str = "classifier", init_variables=None, class_balanced: bool = False,
                     class_weights: np.ndarray | None = None) -> dict:
  """Trains a classifier and returns its variables ({'params'} and, with BatchNorm, {'batch_stats'}).

  Args:
    programs: from `build_programs`.
    images: uint8 [N, H, W, C].
    labels: int [N].
    seed: initialisation, dropout, augmentation and batch-order seed; batches are
      `batch_order.batch_indices` (or `class_balanced_indices`) of (seed, step), so equal
      seeds give equal runs.
    num_steps: optimiser steps.
    batch_size: global batch size.
    inputs: the loss inputs (`classifier_step.loss_args`; default: plain cross-entropy).
    log_every: progress line every this many steps (0: only at the end).
    name: label of the progress lines.
    init_variables: start from these variables instead of a fresh initialisation (cRT keeps
      the features and BatchNorm statistics of a trained classifier and re-initialises its head).
    class_balanced: draw class-balanced batches instead of uniform ones.
    class_weights: per-class loss weights [C], shorthand for inputs with only weights.

  Returns:
    The trained variables (on the mesh, replicated).
  """
  num_classes = programs.model.num_classes
  if inputs is None:
    inputs = classifier_step.loss_args(num_classes, weights=class_weights)
  dataset = device_dataset.DeviceDataset(images, labels, programs.mesh, INPUT_RANGE)
  device_inputs = parallel.replicate(jax.tree.map(jnp.asarray, inputs), programs.mesh)
  state = programs.init(jax.random.PRNGKey(seed))
  if init_variables is not None:
    kept = jax.device_get(init_variables)
    params = jax.tree_util.tree_map_with_path(lambda path, new, old: new if _is_head(path) else old, state.params,
                                              kept["params"])
    state = state.replace(params=parallel.replicate(params, programs.mesh),
                          batch_stats=parallel.replicate(kept.get("batch_stats", {}), programs.mesh))
  recipe = programs.recipe

  def step_fn(state, step):
    if class_balanced:
      batch = dataset.gather(batch_order.class_balanced_indices(step, labels, batch_size, seed)[None])
    else:
      batch = dataset.batches([step], batch_size, seed)
    rate = parallel.replicate(jnp.float32(recipe.learning_rate_at(step, num_steps)), programs.mesh)
    return programs.train_step(state, batch, {**device_inputs, "learning_rate": rate})

  # At most one step in flight: with many fake CPU devices, a deep queue of collective
  # programs can starve XLA:CPU's all-reduce rendezvous (seen as a 40 s "Termination
  # timeout" abort); one step of lookahead keeps the host dispatching while the devices compute.
  result = loop.train(state, step_fn, num_steps=num_steps, name=name, log_every=log_every,
                      images_per_step=batch_size, one_in_flight=True,
                      describe=lambda s: f"loss={s['loss']:.4f} {s['images_per_sec']:.0f} img/s")
  return result.state.variables()


def train_classifiers(programs: ClassifierPrograms, images: np.ndarray, labels: np.ndarray, *, seeds: Sequence[int],
                      num_steps: int, batch_size: int, inputs: dict | None = None, log_every: int = 0,
                      name: str = "classifiers") -> list[dict]:
  """Trains one classifier per seed as one program (stacked states, vmapped step); their variables in seed order.

  Each member starts from `programs.init(seed)` and reads the batches of its own seed, as
  `train_classifier` with that seed does, so each equals its sequential run up to the float
  rounding of batched convolutions. Faster where one classifier leaves the device idle (a
  GPU: docs/device_check.md); on a CPU the sequential runs are faster.

  Args:
    programs: from `build_programs`.
    images: uint8 [N, H, W, C].
    labels: int [N].
    seeds: one classifier per seed.
    num_steps: optimiser steps.
    batch_size: global batch size of each member.
    inputs: the loss inputs, shared by the members (`classifier_step.loss_args`).
    log_every: progress line every this many steps (0: only at the end).
    name: label of the progress lines.

  Returns:
    The trained variables of each seed (on the mesh, replicated).
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError("train_classifiers needs at least one seed")
  if inputs is None:
    inputs = classifier_step.loss_args(programs.model.num_classes)
  dataset = device_dataset.DeviceDataset(images, labels, programs.mesh, INPUT_RANGE)
  device_inputs = parallel.replicate(jax.tree.map(jnp.asarray, inputs), programs.mesh)
  states = parallel.replicate(parallel.stack_members([programs.init(jax.random.PRNGKey(s)) for s in seeds]), programs.mesh)
  recipe = programs.recipe

  def step_fn(states, step):
    batches = parallel.stack_members([dataset.batches([step], batch_size, s) for s in seeds])
    rate = parallel.replicate(jnp.float32(recipe.learning_rate_at(step, num_steps)), programs.mesh)
    return programs.stacked_train_step(states, batches, {**device_inputs, "learning_rate": rate})

  result = loop.train(states, step_fn, num_steps=num_steps, name=name, log_every=log_every,
                      images_per_step=batch_size * len(seeds), one_in_flight=True,
                      describe=lambda s: f"mean loss={s['loss']:.4f} {s['images_per_sec']:.0f} img/s")
  variables = result.state.variables()
  return [jax.tree.map(lambda x, k=k: x[k], variables) for k in range(len(seeds))]


def predict(programs: ClassifierPrograms, variables, images: np.ndarray, batch_size: int = 1000
            ) -> tuple[np.ndarray, np.ndarray]:
  """Class probabilities [N, C] and features [N, hidden] of uint8 images [N, H, W, C].

  `variables` come from `train_classifier`.

  Single-process: every row is fed from this host, in chunks of one compiled shape.
  """
  n_devices = programs.mesh.size
  batch_size = max(n_devices, batch_size - batch_size % n_devices)
  return batching.map_chunks(
      lambda _, rows: programs.predict(variables, parallel.shard_batch(images[rows].astype(np.float32) / 255.0,
                                                                    programs.mesh)),
      len(images), batch_size)


def read_variables(path: str, template) -> dict:
  """Classifier variables from a .msgpack file (a file of the parameters alone is read as {'params'})."""
  state = flax.serialization.msgpack_restore(fs.read_bytes(path))
  if "params" not in state:  # a model without other variables saved its parameters alone
    state = {"params": state}
  return flax.serialization.from_state_dict(template, state)
