"""Generated-image quality: per-class Frechet distance in an evaluator CNN's features, and the classification accuracy score.

The evaluator is a CNN trained on the full balanced train split; its 128-d
hidden layer is the feature space (this is *not* Inception FID: the numbers
compare generators within one benchmark). `QualityEvaluator.run(generator)`
returns one JSON-able record, as big_vision's evaluators do.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from gan_jax import evaluation
from gan_jax import generative_metrics
from gan_jax.train import classifier_loop

# Train function of the CAS classifier: (images, labels, seed, steps, name) -> params.
TrainFn = Callable[[np.ndarray, np.ndarray, int, int, str], object]
SAMPLES_PER_ROW = 10


class QualityEvaluator:
  """Scores generated images of each class against the real test images of that class.

  Args:
    programs: the benchmark's classifier programs.
    evaluator_params: the evaluator CNN's parameters.
    test: (uint8 images, labels) of the balanced test set.
    num_classes: classes of the data set.
    samples_per_class: images drawn (and real images compared) per class.
    train: trains the CAS classifier; `cas_steps` steps with seed `cas_seed`.
    inception_features: optional uint8 images -> Inception-v3 pool features (`gan_jax.inception`):
      adds FID, KID and precision/recall of all generated classes against their real test images.
  """

  def __init__(self, programs: classifier_loop.ClassifierPrograms, evaluator_params, test: tuple[np.ndarray, np.ndarray],
               *, num_classes: int, samples_per_class: int, train: TrainFn, cas_steps: int, cas_seed: int,
               inception_features: Callable[[np.ndarray], np.ndarray] | None = None):
    self.programs, self.params, self.test = programs, evaluator_params, test
    self.num_classes, self.samples_per_class = num_classes, samples_per_class
    self.train, self.cas_steps, self.cas_seed = train, cas_steps, cas_seed
    self.inception_features = inception_features
    self._test_features: dict[int, np.ndarray] = {}
    self._test_inception: np.ndarray | None = None

  def inception(self, images: np.ndarray, labels: np.ndarray) -> dict | None:
    """FID, KID (mean, std) and precision/recall of images against the real test images of their classes."""
    if self.inception_features is None:
      return None
    if self._test_inception is None:
      self._test_inception = self.inception_features(self.test[0])
    real = self._test_inception[np.isin(self.test[1], np.unique(labels))]
    fake = self.inception_features(images)
    kid_mean, kid_std = generative_metrics.kid(real, fake)
    precision, recall = generative_metrics.precision_recall(real, fake)
    return {"fid": generative_metrics.fid(real, fake), "kid": kid_mean, "kid_std": kid_std, "precision": precision,
            "recall": recall, "num_generated": int(len(fake)), "num_real": int(len(real))}

  def _features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return classifier_loop.predict(self.programs, self.params, images)

  def test_features(self) -> dict[int, np.ndarray]:
    """The evaluator features of the real test images of each class (computed once)."""
    if not self._test_features:
      _, features = self._features(self.test[0])
      self._test_features.update({c: features[self.test[1] == c] for c in range(self.num_classes)})
    return self._test_features

  def real_floor(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict:
    """Frechet distance of real train against real test images at the same sample size: the floor."""
    rows = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:self.samples_per_class]
                           for c in range(self.num_classes)])
    _, features = self._features(images[rows])
    test = self.test_features()
    fd = [evaluation.features_frechet_distance(features[labels[rows] == c], test[c]) for c in range(self.num_classes)]
    record = {"method": "real_train", "frechet_distance": fd, "samples_per_class": self.samples_per_class}
    inception = self.inception(images[rows], labels[rows])
    return {**record, "inception": inception} if inception else record

  def run(self, method: str, draw: Callable[[int, int], np.ndarray], classes: tuple[int, ...]) -> tuple[dict, dict]:
    """Scores fresh samples of every class a generator covers.

    Args:
      method: the generative method's name.
      draw: (class, n) -> uint8 images, fresh on every call.
      classes: the classes it generates (a per-class method lacks those that needed no images).

    Returns:
      (record with 'frechet_distance', 'evaluator_accuracy' (per class, None where not
      generated), 'cas' (classification metrics, or None unless every class is generated),
      and {'image', 'label'}: the first SAMPLES_PER_ROW samples of each class for the report).
    """
    samples = {c: draw(c, self.samples_per_class) for c in classes}
    test = self.test_features()
    fd, accuracy = [None] * self.num_classes, [None] * self.num_classes
    for c in classes:
      probs, features = self._features(samples[c])
      fd[c] = evaluation.features_frechet_distance(features, test[c])
      accuracy[c] = 100.0 * float(np.mean(probs.argmax(-1) == c))
    record = {"method": method, "frechet_distance": fd, "evaluator_accuracy": accuracy,
              "samples_per_class": self.samples_per_class, "cas": None}
    if self.inception_features is not None:
      record["inception"] = self.inception(np.concatenate([samples[c] for c in classes]),
                                           np.concatenate([np.full(len(samples[c]), c) for c in classes]))
    if len(classes) == self.num_classes:  # CAS needs a training image of every class
      images = np.concatenate([samples[c] for c in classes])
      labels = np.concatenate([np.full(len(samples[c]), c, np.int32) for c in classes])
      params = self.train(images, labels, self.cas_seed, self.cas_steps, f"cas {method}")
      probs, _ = classifier_loop.predict(self.programs, params, self.test[0])
      record["cas"] = evaluation.classification_metrics(self.test[1], probs.argmax(-1), self.num_classes)
    shown = {c: samples[c][:SAMPLES_PER_ROW] for c in classes}
    grid = {"image": np.concatenate(list(shown.values())),
            "label": np.concatenate([np.full(len(shown[c]), c, np.int32) for c in classes])}
    return record, grid
