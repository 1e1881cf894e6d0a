"""The imbalance benchmark behind `experiments.imbalance`: data -> methods -> classifiers -> metrics.

Every stage writes its result into the workdir and is skipped when that file
exists, so a rerun reuses finished work and a killed run resumes (generators
from their last checkpoint):

  models/evaluator.msgpack        evaluator CNN on the full balanced train split (Frechet features)
  models/filter.msgpack           class-weighted CNN on the imbalanced set (confidence filter; optional)
  generators/<method>/            GAN / cVAE training runs (dcgan: one run per class, class<c>/)
  synthetic/<method>.npz, .json   the images each method adds, with counts and filter acceptance
  classifiers/<method>/seed<k>.json   metrics of one classifier run on both test sets
  quality/<method>.json, real.json    per-class Frechet distance and classification accuracy score
  results.json|csv|md, *.png      the report (gan_jax.imbalance_benchmark.report)

Single-process: the classifiers' data sets are small enough for one host.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import flax.serialization
import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import data
from gan_jax import evaluation
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import progress
from gan_jax import workdir as workdir_lib
from gan_jax.imbalance_benchmark import generators
from gan_jax.imbalance_benchmark import methods as methods_lib
from gan_jax.imbalance_benchmark import report
from gan_jax.train import classifier_loop
from gan_jax.train import gan_loop

TEST_SETS = report.TEST_SETS
# Fields a rerun may change without invalidating finished stages: they only select what runs.
RESUMABLE_FIELDS = ("methods", "num_seeds")
OUTPUTS = ("models", "generators", "synthetic", "classifiers", "quality", "results.json")


def validate_config(config: ml_collections.ConfigDict) -> list[str]:
  """Checks the config and returns the methods to run (ValueError names the bad value)."""
  data.get_dataset_info(config.dataset)
  methods = methods_lib.parse_methods(config.methods)
  for field in ("num_seeds", "cas_per_class"):
    if int(config[field]) <= 0:
      raise ValueError(f"config.{field} must be a positive integer, got {config[field]}")
  for field in ("num_steps", "batch_size"):
    if int(config.classifier[field]) <= 0:
      raise ValueError(f"config.classifier.{field} must be a positive integer, got {config.classifier[field]}")
  if not 0.0 <= config.filter_confidence < 1.0:
    raise ValueError(f"config.filter_confidence must lie in [0, 1), got {config.filter_confidence}")
  methods_lib.check_synthetic_ratio(config.synthetic_ratio)
  methods_lib.check_fill_remainder(config.fill_remainder)
  for method in set(methods) & set(methods_lib.GENERATIVE_METHODS):
    if method not in config.generators:
      raise ValueError(f"method '{method}' needs config.generators.{method}")
  return methods


class Stages:
  """Runs stages in order, skipping finished ones, and logs one progress line per stage with an ETA.

  The ETA weighs the remaining stages by their expected work (training steps),
  measured against the work already done in this process.
  """

  def __init__(self, plan: list[tuple[str, float]]):
    self.plan = dict(plan)
    self.total = len(plan)
    self.index = 0
    self.work_left = sum(units for _, units in plan)
    self.work_done = 0.0
    self.seconds = 0.0

  def run(self, name: str, is_done: Callable[[], bool], fn: Callable[[], Any]) -> None:
    self.index += 1
    units = self.plan.get(name, 0.0)
    self.work_left -= units
    if is_done():
      logging.info("[stage %d/%d] %s: cached", self.index, self.total, name)
      return
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    self.seconds += took
    self.work_done += units
    eta = self.seconds / self.work_done * self.work_left if self.work_done else float("nan")
    logging.info("[stage %d/%d] %s: done in %s | ETA %s", self.index, self.total, name,
                 progress.format_duration(took), progress.format_duration(eta) if eta == eta else "?")


def save_params(path: str, params) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(flax.serialization.to_bytes(jax.device_get(params)))
  os.replace(tmp, path)


def load_params(path: str, template):
  with open(path, "rb") as f:
    return flax.serialization.from_bytes(jax.device_get(template), f.read())


def save_arrays(path: str, **arrays) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)



def load_data(config: ml_collections.ConfigDict, idx_dir: str | None) -> dict[str, Any]:
  """The imbalanced train set (as the generators see it), the full train split and both test sets."""
  subset = ml_collections.ConfigDict({"dataset": config.dataset, "seed": config.seed, "imbalance": config.profile,
                                      "train_classes": "", "class_balanced": False,
                                      "imbalance_rho": config.imbalance_rho,
                                      "imbalance_n_max": config.imbalance_n_max,
                                      "imbalance_minority_classes": config.imbalance_minority_classes,
                                      "imbalance_fraction": config.imbalance_fraction})
  train_images, train_labels = gan_loop.load_train_arrays(subset, idx_dir)
  full_images, full_labels = data.load_arrays(config.dataset, "train", idx_dir=idx_dir)
  test_images, test_labels = data.load_arrays(config.dataset, "test", idx_dir=idx_dir)
  if config.test_examples:
    keep = np.sort(np.random.default_rng([config.seed, 0x7E57]).permutation(len(test_labels))[:config.test_examples])
    test_images, test_labels = test_images[keep], test_labels[keep]
  num_classes = data.get_dataset_info(config.dataset).num_classes
  available = data.class_counts(test_labels, num_classes)
  wanted = data.profile_counts(config.test_profile, available)
  # MNIST's test split has 980 zeros, fewer than DeepSMOTE's 1000: such a class keeps all it has.
  test_counts = np.minimum(wanted, available).tolist()
  if test_counts != list(wanted):
    logging.warning("Imbalanced test subset: profile asks %s, the test split has %s; using %s", list(wanted),
                    available.tolist(), test_counts)
  keep = data.make_imbalanced(test_labels, test_counts, config.seed, num_classes=num_classes)
  return {"train": (train_images, train_labels), "full_train": (full_images, full_labels),
          "test": {"balanced": (test_images, test_labels), "imbalanced": (test_images[keep], test_labels[keep])},
          "num_classes": num_classes}


def classifier_seed(config: ml_collections.ConfigDict, k: int) -> int:
  """The k-th classifier seed; the same for every method, so per-seed differences are paired."""
  return 1000 * int(config.seed) + k


def run_benchmark(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
  """Runs (or resumes) the whole benchmark and writes the report.

  Args:
    config: see experiments/configs/imbalance.py.
    workdir: the run folder (layout in the module docstring).
    idx_dir: offline IDX folder (None: TFDS).
    overwrite: discard an earlier run with a different config.

  Returns:
    results.json's content, or {'stopped': True} when a signal stopped the run.
  """
  method_names = validate_config(config)
  if jax.process_count() > 1:
    raise ValueError("the imbalance benchmark runs in one process; drop --distributed")
  workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=OUTPUTS, resumable_fields=RESUMABLE_FIELDS)
  mesh = parallel.make_mesh()
  ds = load_data(config, idx_dir)
  num_classes = ds["num_classes"]
  train_images, train_labels = ds["train"]
  counts = np.bincount(train_labels, minlength=num_classes)
  add = methods_lib.synthetic_counts(counts, config.synthetic_ratio)
  logging.info("Imbalanced %s train set: %s images per class; adding %s", config.dataset, counts.tolist(),
               add.tolist())
  image_shape = train_images.shape[1:]
  programs = classifier_loop.build_programs(config.classifier, num_classes, image_shape, mesh)
  template = jax.device_get(programs.init(jax.random.PRNGKey(0)).params)
  cls = config.classifier
  paths = _Paths(workdir)
  generative = [m for m in method_names if m in methods_lib.GENERATIVE_METHODS]
  with_synthetic = [m for m in method_names if m not in methods_lib.NO_SYNTHETIC]
  use_filter = config.filter_confidence > 0 and bool(generative)

  def train(images, labels, seed, steps, name, class_weights=None):
    return classifier_loop.train_classifier(programs, images, labels, seed=seed, num_steps=steps,
                                            batch_size=cls.batch_size, class_weights=class_weights,
                                            log_every=cls.log_every, name=name)

  plan = [("evaluator", config.evaluator_steps)]
  plan += [("filter", cls.num_steps)] if use_filter else []
  plan += [(f"synthetic {m}", _generator_units(config, m, add)) for m in with_synthetic]
  plan += [(f"classifier {m} seed {k}", cls.num_steps) for m in method_names for k in range(config.num_seeds)]
  plan += [("quality real", 1.0)] + [(f"quality {m}", config.cas_steps) for m in generative]
  stages = Stages(plan)
  samplers: dict[str, generators.ClassSampler] = {}

  def sampler(method):
    if method not in samplers:
      samplers[method] = generators.train_and_load(method, config, paths.generator(method), idx_dir,
                                                   train_images, train_labels, add)
    return samplers[method]

  try:
    with preemption.StopSignal() as stop:
      stages.run("evaluator", lambda: os.path.exists(paths.evaluator),
                 lambda: save_params(paths.evaluator, train(*ds["full_train"], 10_000 + config.seed,
                                                            config.evaluator_steps, "evaluator")))
      evaluator = load_params(paths.evaluator, template)
      if use_filter:
        stages.run("filter", lambda: os.path.exists(paths.filter), lambda: save_params(
            paths.filter, train(train_images, train_labels, 20_000 + config.seed, cls.num_steps, "filter",
                                classifier_loop.inverse_frequency_weights(train_labels, num_classes))))
      filter_params = load_params(paths.filter, template) if use_filter else None

      def confidence(images, c):
        return classifier_loop.predict(programs, filter_params, images)[0][:, c]

      for m in with_synthetic:
        stages.run(f"synthetic {m}", lambda m=m: os.path.exists(paths.synthetic(m)),
                   lambda m=m: _make_synthetic(m, config, paths, sampler, ds, add,
                                               confidence if use_filter else None))
        if stop.should_stop():
          return _stopped(stop)
      for m in method_names:
        for k in range(config.num_seeds):
          stages.run(f"classifier {m} seed {k}", lambda m=m, k=k: os.path.exists(paths.classifier(m, k)),
                     lambda m=m, k=k: _classifier_run(m, k, config, paths, programs, ds, train))
          if stop.should_stop():
            return _stopped(stop)
      test_features: dict[int, np.ndarray] = {}

      def evaluator_test_features():  # computed once, shared by every quality stage
        if not test_features:
          test_features.update(_class_features(programs, evaluator, *ds["test"]["balanced"], num_classes))
        return test_features

      stages.run("quality real", lambda: os.path.exists(paths.quality("real")),
                 lambda: _real_quality(config, paths, programs, evaluator, ds, evaluator_test_features()))
      for m in generative:
        stages.run(f"quality {m}", lambda m=m: os.path.exists(paths.quality(m)),
                   lambda m=m: _generated_quality(m, config, paths, programs, evaluator, ds, sampler, train,
                                                 evaluator_test_features(), add))
        if stop.should_stop():
          return _stopped(stop)
  except generators.GeneratorStopped as e:
    logging.warning("%s; rerun the same command to resume.", e)
    return {"stopped": True}
  return report.write_report(workdir, config, method_names, generative, counts, ds, paths)


def _stopped(stop) -> dict:
  logging.warning("Stopped by %s between stages; rerun the same command to resume.", stop.received)
  return {"stopped": True}


class _Paths:
  """Where each stage's result lives in the workdir."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.evaluator = os.path.join(workdir, "models", "evaluator.msgpack")
    self.filter = os.path.join(workdir, "models", "filter.msgpack")

  def generator(self, method: str) -> str:
    return os.path.join(self.workdir, "generators", method)

  def synthetic(self, method: str) -> str:
    return os.path.join(self.workdir, "synthetic", f"{method}.npz")

  def classifier(self, method: str, k: int) -> str:
    return os.path.join(self.workdir, "classifiers", method, f"seed{k}.json")

  def quality(self, method: str) -> str:
    return os.path.join(self.workdir, "quality", f"{method}.json")


def _generator_units(config, method: str, add) -> float:
  if method in methods_lib.GAN_METHODS:
    steps = config.generators[method].num_steps * config.generators[method].d_steps * 2
    return steps * (int(np.sum(add > 0)) if method == "dcgan" else 1)
  if method == "cvae":
    return config.generators.cvae.num_steps
  return 1.0


def _make_synthetic(method, config, paths, sampler, ds, add, confidence) -> None:
  train_images, train_labels = ds["train"]
  if method in ("random_oversample", "smote"):
    images, labels = methods_lib.imblearn_synthetic(method, train_images, train_labels, add, config.seed,
                                                    k_neighbors=config.smote_k)
    info = {}
  else:
    draw = generators.keyed(sampler(method), config.seed, stream=1)
    images, labels, info = methods_lib.sample_with_filter(draw, add, confidence, config.filter_confidence)
  save_arrays(paths.synthetic(method), image=images, label=labels)
  workdir_lib.write_json(paths.synthetic(method)[:-4] + ".json",
                      {"method": method, "added_per_class": np.bincount(labels, minlength=len(add)).tolist(), **info})


def load_training_set(method: str, paths: _Paths, ds) -> tuple[np.ndarray, np.ndarray]:
  """The imbalanced real set plus the method's synthetic images (if any)."""
  images, labels = ds["train"]
  if method in methods_lib.NO_SYNTHETIC:
    return images, labels
  with np.load(paths.synthetic(method)) as f:
    return np.concatenate([images, f["image"]]), np.concatenate([labels, f["label"]]).astype(np.int32)


def classifier_training_set(method: str, config, paths: _Paths, ds):
  """A method's classifier training set and per-class loss weights (None: unweighted).

  `class_weight` weights the imbalanced set. A method that adds images and leaves a gap
  (synthetic_ratio < 1) has it closed by `config.fill_remainder`: inverse-frequency weights
  over the augmented set, or duplicates of real images drawn by imbalanced-learn.
  """
  num_classes = ds["num_classes"]
  images, labels = load_training_set(method, paths, ds)
  if method == "class_weight":
    return images, labels, classifier_loop.inverse_frequency_weights(labels, num_classes)
  if method in methods_lib.NO_SYNTHETIC or config.fill_remainder == "none":
    return images, labels, None
  if config.fill_remainder == "class_weight":
    return images, labels, classifier_loop.inverse_frequency_weights(labels, num_classes)
  real_images, real_labels = ds["train"]
  missing = methods_lib.remainder_counts(np.bincount(real_labels, minlength=num_classes),
                                         np.bincount(labels, minlength=num_classes))
  extra_images, extra_labels = methods_lib.imblearn_synthetic("random_oversample", real_images, real_labels,
                                                              missing, config.seed)
  return np.concatenate([images, extra_images]), np.concatenate([labels, extra_labels]).astype(np.int32), None


def _classifier_run(method, k, config, paths, programs, ds, train) -> None:
  images, labels, weights = classifier_training_set(method, config, paths, ds)
  start = time.perf_counter()
  params = train(images, labels, classifier_seed(config, k), config.classifier.num_steps, f"{method} seed {k}",
                 weights)
  record = {"method": method, "seed_index": k, "seed": classifier_seed(config, k),
            "train_examples": int(len(labels)), "train_seconds": time.perf_counter() - start}
  for test_set in TEST_SETS:
    test_images, test_labels = ds["test"][test_set]
    probs, _ = classifier_loop.predict(programs, params, test_images)
    record[test_set] = evaluation.classification_metrics(test_labels, probs.argmax(-1), ds["num_classes"])
  os.makedirs(os.path.dirname(paths.classifier(method, k)), exist_ok=True)
  workdir_lib.write_json(paths.classifier(method, k), record)


def _class_features(programs, params, images, labels, num_classes):
  _, features = classifier_loop.predict(programs, params, images)
  return {c: features[labels == c] for c in range(num_classes)}


def _real_quality(config, paths, programs, evaluator, ds, test) -> None:
  """Frechet distance between real train and real test images of each class: the floor a generator can reach."""
  num_classes = ds["num_classes"]
  full_images, full_labels = ds["full_train"]
  rng = np.random.default_rng([config.seed, 0xFD])
  rows = np.concatenate([rng.permutation(np.flatnonzero(full_labels == c))[:config.cas_per_class]
                         for c in range(num_classes)])
  real = _class_features(programs, evaluator, full_images[rows], full_labels[rows], num_classes)
  fd = [evaluation.features_frechet_distance(real[c], test[c]) for c in range(num_classes)]
  os.makedirs(os.path.dirname(paths.quality("real")), exist_ok=True)
  workdir_lib.write_json(paths.quality("real"), {"method": "real_train", "frechet_distance": fd,
                                                 "samples_per_class": config.cas_per_class})


def _generated_quality(method, config, paths, programs, evaluator, ds, sampler, train, test, add) -> None:
  """Per-class Frechet distance, evaluator accuracy and the classification accuracy score of fresh samples."""
  num_classes = ds["num_classes"]
  draw = generators.keyed(sampler(method), config.seed, stream=2)
  # The per-class dcgan has generators only for the classes that needed images.
  classes = [c for c in range(num_classes) if method != "dcgan" or add[c] > 0]
  samples = {c: draw(c, config.cas_per_class) for c in classes}
  fd, evaluator_accuracy = [None] * num_classes, [None] * num_classes
  for c in classes:
    probs, features = classifier_loop.predict(programs, evaluator, samples[c])
    fd[c] = evaluation.features_frechet_distance(features, test[c])
    evaluator_accuracy[c] = 100.0 * float(np.mean(probs.argmax(-1) == c))
  record = {"method": method, "frechet_distance": fd, "evaluator_accuracy": evaluator_accuracy,
            "samples_per_class": config.cas_per_class, "cas": None}
  if len(classes) == num_classes:  # CAS needs every class; a per-class dcgan lacks the majority class
    images = np.concatenate([samples[c] for c in classes])
    labels = np.concatenate([np.full(len(samples[c]), c, np.int32) for c in classes])
    params = train(images, labels, 30_000 + config.seed, config.cas_steps, f"cas {method}")
    test_images, test_labels = ds["test"]["balanced"]
    probs, _ = classifier_loop.predict(programs, params, test_images)
    record["cas"] = evaluation.classification_metrics(test_labels, probs.argmax(-1), num_classes)
  save_arrays(os.path.join(paths.workdir, "quality", f"{method}_samples.npz"),
              image=np.concatenate([samples[c][:report.SAMPLES_PER_ROW] for c in classes]),
              label=np.repeat(np.asarray(classes, np.int32), report.SAMPLES_PER_ROW))
  workdir_lib.write_json(paths.quality(method), record)

