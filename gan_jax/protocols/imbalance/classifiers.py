"""How a method's classifier is trained and scored: the recipe, its loss inputs, cRT and post-hoc adjustment.

Every classifier of a benchmark follows one recipe (`classifier_loop.Recipe`:
optimiser, weight decay, learning-rate schedule, augmentation); a method's loss
part decides the loss, the head and the loss inputs (class counts, weights and
the step where deferred re-weighting starts: the first learning-rate decay).
Programs are built once per distinct loss and shared by every method and seed.
"""
from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from gan_jax import evaluation
from gan_jax import losses
from gan_jax.protocols.imbalance import methods as methods_lib
from gan_jax.train import classifier_loop
from gan_jax.train import classifier_step

# Post-hoc logit adjustment: tau is chosen on the validation set from this grid (Menon et al.
# tune tau; tau = 1 is the Fisher-consistent value).
POSTHOC_TAUS = tuple(float(t) for t in np.round(np.linspace(0.0, 2.0, 9), 3))


class Classifiers:
  """The classifier programs and training procedures of one benchmark run.

  Args:
    config: the benchmark config (classifier section and the remedies' settings).
    num_classes: classes of the data set.
    image_shape: (H, W, C).
    mesh: the ('data',) mesh.
  """

  def __init__(self, config: ml_collections.ConfigDict, num_classes: int, image_shape, mesh):
    self.config, self.num_classes, self.image_shape, self.mesh = config, num_classes, tuple(image_shape), mesh
    self.recipe = classifier_loop.Recipe.from_config(config.classifier)
    self._programs: dict[tuple, classifier_loop.ClassifierPrograms] = {}
    self.plain = self.programs(methods_lib.CROSS_ENTROPY)

  def describe(self) -> dict:
    """The recipe and the remedies' settings, for results.json."""
    cls, config = self.config.classifier, self.config
    architecture = {"model": cls.get("model", "cnn")}
    if architecture["model"] == "cnn":
      architecture.update(conv_widths=list(cls.conv_widths), hidden=cls.hidden, dropout_rate=cls.dropout_rate)
    else:
      architecture["resnet_blocks"] = cls.get("resnet_blocks", 5)
    return {**dataclasses.asdict(self.recipe), "architecture": architecture,
            "batch_size": cls.batch_size, "num_steps": cls.num_steps, "crt_steps": cls.crt_steps,
            "la_tau": config.la_tau, "ldam_max_margin": config.ldam_max_margin, "ldam_scale": config.ldam_scale,
            "drw_beta": config.drw_beta, "mixup_alpha": config.mixup_alpha, "remix": bool(config.remix),
            "drw_start_step": self.switch_step(cls.num_steps), "posthoc_taus": list(POSTHOC_TAUS)}

  def loss_config(self, part: methods_lib.LossPart) -> classifier_step.LossConfig:
    config = self.config
    return classifier_step.LossConfig(
        kind=part.kind, tau=config.la_tau, max_margin=config.ldam_max_margin, scale=config.ldam_scale,
        mixup_alpha=config.mixup_alpha if part.mixup else 0.0,
        remix_kappa=config.remix_kappa if part.mixup and config.remix else 0.0, remix_tau=config.remix_tau,
        augment=self.recipe.augment)

  def programs(self, part: methods_lib.LossPart, head_only: bool = False) -> classifier_loop.ClassifierPrograms:
    key = (self.loss_config(part), part.head, head_only)
    if key not in self._programs:
      self._programs[key] = classifier_loop.build_programs(
          self.config.classifier, self.num_classes, self.image_shape, self.mesh, recipe=self.recipe, loss=key[0],
          head=part.head, head_only=head_only)
    return self._programs[key]

  def switch_step(self, num_steps: int) -> int:
    """Where deferred re-weighting starts: the first learning-rate decay of the recipe."""
    return int(round(self.recipe.decay_at[0] * num_steps))

  def inputs(self, part: methods_lib.LossPart, labels: np.ndarray, weights: np.ndarray | None,
             num_steps: int) -> dict:
    counts = np.bincount(labels, minlength=self.num_classes)
    if np.any(counts == 0):
      raise ValueError(f"every class needs a training image, got counts {counts.tolist()}")
    late, switch = None, -1
    if part.deferred == "effective_number":
      late = np.asarray(losses.effective_number_weights(counts, self.config.drw_beta))
      switch = self.switch_step(num_steps)
    return classifier_step.loss_args(self.num_classes, class_counts=counts, weights=weights, late_weights=late,
                                     switch_step=switch)

  def train(self, programs, images, labels, *, seed: int, steps: int, name: str, inputs: dict | None = None,
            class_weights=None, **kwargs):
    cls = self.config.classifier
    return classifier_loop.train_classifier(programs, images, labels, seed=seed, num_steps=steps,
                                            batch_size=cls.batch_size, inputs=inputs, class_weights=class_weights,
                                            log_every=cls.log_every, name=name, **kwargs)

  def fit(self, part: methods_lib.LossPart, images, labels, weights, *, seed: int, name: str):
    """A fresh classifier trained with the loss part (parameters on the mesh)."""
    steps = self.config.classifier.num_steps
    return self.train(self.programs(part), images, labels, seed=seed, steps=steps, name=name,
                      inputs=self.inputs(part, labels, weights, steps))

  def fit_seeds(self, part: methods_lib.LossPart, images, labels, weights, *, seeds: list[int], name: str):
    """`fit` for several seeds as one vmapped program (`classifier_loop.train_classifiers`), in seed order."""
    steps, cls = self.config.classifier.num_steps, self.config.classifier
    return classifier_loop.train_classifiers(self.programs(part), images, labels, seeds=seeds, num_steps=steps,
                                             batch_size=cls.batch_size, inputs=self.inputs(part, labels, weights, steps),
                                             log_every=cls.log_every, name=name)

  def retrain_head(self, plain_variables, images, labels, *, seed: int, name: str):
    """cRT: the plain classifier's features frozen, its last layer re-initialised and re-trained class-balanced."""
    part = methods_lib.CROSS_ENTROPY
    return self.train(self.programs(part, head_only=True), images, labels, seed=seed,
                      steps=self.config.classifier.crt_steps, name=name, init_variables=plain_variables,
                      class_balanced=True)

  def probabilities(self, part: methods_lib.LossPart, params, images: np.ndarray) -> np.ndarray:
    probs, _ = classifier_loop.predict(self.programs(part), params, images)
    return probs

  def posthoc_tau(self, plain_params, validation, train_counts) -> float:
    """The tau of POSTHOC_TAUS with the best balanced accuracy on the balanced validation set."""
    if validation is None:
      return float(self.config.la_tau)
    probs = self.probabilities(methods_lib.CROSS_ENTROPY, plain_params, validation[0])
    scores = [evaluation.classification_metrics(validation[1], adjust(probs, train_counts, tau).argmax(-1),
                                                self.num_classes)["balanced_accuracy"] for tau in POSTHOC_TAUS]
    return POSTHOC_TAUS[int(np.argmax(scores))]

  def score(self, labels: np.ndarray, probs: np.ndarray, train_counts) -> dict:
    """The classification metrics, the accuracy per shot group and the calibration error of predictions."""
    return {**evaluation.classification_metrics(labels, probs.argmax(-1), self.num_classes),
            **evaluation.long_tail_metrics(labels, probs, train_counts)}


def adjust(probs: np.ndarray, train_counts, tau: float) -> np.ndarray:
  """Post-hoc logit adjustment of predicted probabilities: softmax(log p - tau log pi)."""
  logits = np.log(np.clip(probs, 1e-30, 1.0))
  adjusted = np.asarray(losses.posthoc_logit_adjustment(logits, np.asarray(train_counts, np.float32), tau))
  adjusted = adjusted - adjusted.max(-1, keepdims=True)
  return np.exp(adjusted) / np.exp(adjusted).sum(-1, keepdims=True)
