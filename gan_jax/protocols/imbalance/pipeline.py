"""The imbalance benchmark: data -> methods -> classifiers -> metrics, as one list of cached stages.

The config is read here and nowhere below: the data are loaded once
(`gan_jax.data.splits`) and every model (generators, filter, evaluator,
classifiers) is handed its arrays. Stages (see `gan_jax.stages`) write their
results where `layout.Layout` says; a rerun skips finished stages, a killed run
resumes (generators from their last checkpoint), and SIGTERM stops between stages.
Single-process: the classifiers' data sets are small enough for one host.
"""
from __future__ import annotations

import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import fs
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import stages
from gan_jax import workdir as workdir_lib
from gan_jax.data import imbalance
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.protocols.imbalance import classifiers as classifiers_lib
from gan_jax.protocols.imbalance import generators as generators_lib
from gan_jax.protocols.imbalance import layout as layout_lib
from gan_jax.protocols.imbalance import methods as methods_lib
from gan_jax.protocols.imbalance import quality as quality_lib
from gan_jax.protocols.imbalance import report
from gan_jax.protocols.imbalance import seeds
from gan_jax.protocols.imbalance import validation
from gan_jax.train import classifier_loop

# How the seeds of a method's classifier train: 'stacked' as one vmapped program, 'sequential' one
# after another, 'auto' stacked on accelerators and sequential on CPUs, where XLA's batched
# convolutions made the stacked program about 2x slower (docs/device_check.md).
CLASSIFIER_SEEDS = ("auto", "stacked", "sequential")
# Likewise the per-class generators (the dcgan method) of one batch size: vmapped they ran at 0.73x
# of one after another on 2 CPU cores and 1.70x on an H200 (10 DCGANs, docs/device_check.md).
CLASS_GENERATORS = CLASSIFIER_SEEDS


def stack_seeds(mode: str, platform: str, option: str = "classifier_seeds") -> bool:
  """Whether `mode` ('auto', 'stacked' or 'sequential') of `option` trains stacked on a backend `platform`."""
  if mode not in CLASSIFIER_SEEDS:
    raise ValueError(f"Unknown {option} '{mode}'; choose one of: {', '.join(CLASSIFIER_SEEDS)}")
  return mode == "stacked" or (mode == "auto" and platform != "cpu")


class Study:
  """One benchmark run: its data, shared programs and the stage functions that read and write its workdir."""

  def __init__(self, config: ml_collections.ConfigDict, plan: validation.Plan, data: splits.Splits,
               layout: layout_lib.Layout, mesh, stacked: bool = False, stack_classes: bool = False):
    self.config, self.plan, self.data, self.layout = config, plan, data, layout
    # Seeds trained stacked: variables of the later seeds of a method wait here for their stages.
    self.stacked = stacked
    self._waiting: dict[tuple[str, int], Any] = {}
    self.num_classes = data.num_classes
    self.counts = data.train_counts()
    self.add = methods_lib.synthetic_counts(self.counts, config.synthetic_ratio)
    self.classifiers = classifiers_lib.Classifiers(config, self.num_classes, data.image_shape, mesh)
    self.programs = self.classifiers.plain
    self.template = jax.device_get(self.programs.init(jax.random.PRNGKey(0)).variables())
    self.real_counts = self.counts
    gap = methods_lib.synthetic_counts(self.counts, 1.0)
    self.combination_add = np.round(config.combination_ratio * gap).astype(np.int64)
    # Plain classifiers that cRT or post-hoc adjustment build on keep their parameters.
    self.kept = {m.plain for m in plan.methods if m.loss.builds_on_plain}
    # A source used as it is has one test set, with its own class counts.
    self.test_sets = ({report.AS_IS_TEST_SET: data.test} if config.profile == imbalance.AS_IS
                      else {"balanced": data.test, "imbalanced": data.imbalanced_test})
    self.generator_data = generators_lib.Data(*data.train, num_classes=self.num_classes, seed=int(config.seed),
                                              num_devices=mesh.size, stack_classes=stack_classes)
    self.use_filter = config.filter_confidence > 0 and any(m.generator for m in plan.methods)
    self._generators: dict[str, generators_lib.ClassGenerator] = {}
    self._quality: quality_lib.QualityEvaluator | None = None

  # --- shared pieces -------------------------------------------------------------------------

  def train(self, images, labels, seed, steps, name, class_weights=None):
    return self.classifiers.train(self.programs, images, labels, seed=seed, steps=steps, name=name,
                                  class_weights=class_weights)

  def params(self, path: str):
    """A classifier's variables from its .msgpack file."""
    return classifier_loop.read_variables(path, self.template)

  def generator_classes(self, name: str) -> list[int]:
    """The classes a generator is trained for: those that need images (per-class models), else all."""
    if generators_lib.get(name).per_class:
      return [c for c in range(self.num_classes) if self.add[c] > 0]
    return list(range(self.num_classes))

  def generator(self, name: str) -> generators_lib.ClassGenerator:
    if name not in self._generators:
      self._generators[name] = generators_lib.get(name).load(
          self.config.generators[name], self.layout, self.generator_data, self.generator_classes(name))
    return self._generators[name]

  def quality(self) -> quality_lib.QualityEvaluator:
    if self._quality is None:
      self._quality = quality_lib.QualityEvaluator(
          self.programs, self.params(self.layout.evaluator), self.data.test, num_classes=self.num_classes,
          samples_per_class=self.config.cas_per_class, train=self.train, cas_steps=self.config.cas_steps,
          cas_seed=seeds.cas(self.config.seed), inception_features=self.inception_features())
    return self._quality

  def inception_features(self):
    """Inception-v3 features for FID, KID and precision/recall, when `validation.uses_inception` says so."""
    if not validation.uses_inception(self.config, self.data.image_shape):
      return None
    from gan_jax import inception  # pylint: disable=g-import-not-at-top
    return inception.make_feature_fn(inception.load_variables(inception.weights_path(self.config.fid_weights)))

  # --- stages --------------------------------------------------------------------------------

  def stages(self) -> list[stages.Stage]:
    """The whole plan, in order."""
    config, layout, cls = self.config, self.layout, self.config.classifier
    plan = [stages.Stage("evaluator", layout.evaluator, lambda: self.train(
        *self.data.full_train, seeds.evaluator(config.seed), config.evaluator_steps, "evaluator"),
                         config.evaluator_steps)]
    if self.use_filter:
      plan.append(stages.Stage("filter", layout.filter, lambda: self.train(
          *self.data.train, seeds.filter_classifier(config.seed), cls.num_steps, "filter",
          methods_lib.inverse_frequency_weights(self.data.train[1], self.num_classes)), cls.num_steps))
    generator_names = list(dict.fromkeys(m.generator for m in self.plan.methods if m.generator))
    for name in generator_names:
      plan += generators_lib.get(name).stages(config.generators[name], layout, self.generator_data,
                                              self.generator_classes(name))
    # The generators' image quality (Frechet distance, CAS) right after they train: cheaper than
    # their filtered synthetic sets, and what tells whether those are worth drawing.
    plan.append(stages.Stage("quality real", layout.quality("real"), lambda: self.quality().real_floor(
        *self.data.full_train, seeds.real_floor_rng(config.seed)), work=None, kind="quality floor"))  # no CAS
    for name in generator_names:
      plan.append(stages.Stage(f"quality {name}", layout.quality(name), lambda n=name: self.generated_quality(n),
                               config.cas_steps))
    for data_name in dict.fromkeys(m.data.name for m in self.plan.methods if m.adds_images):
      data = methods_lib.DATA_PARTS[data_name]
      drawn = data.kind != "resample"  # a generator's draw keeps finished classes until its marker is written
      plan.append(stages.Stage(
          f"synthetic {data_name}", layout.synthetic_info(data_name), lambda d=data: self.synthetic(d), work=None,
          cleanup=methods_lib.ClassDrawStore(layout.synthetic_classes(data_name)).clear if drawn else None,
          kind="synthetic draw" if drawn else "synthetic resample"))  # hours vs seconds: apart in the ETA
    for method in self.plan.methods:
      for k in range(config.num_seeds):
        plan.append(stages.Stage(f"classifier {method.name} seed {k}", layout.classifier(method.name, k),
                                 lambda m=method, k=k: self.classifier(m, k), cls.num_steps))
    return plan

  def synthetic(self, data: methods_lib.DataPart) -> dict:
    """Draws the images a data part adds (side file .npz); the payload records the counts and filter acceptance."""
    config, info = self.config, {}
    if data.kind == "resample":
      images, labels = methods_lib.imblearn_synthetic(data.name, *self.data.train, self.add, config.seed,
                                                      k_neighbors=config.smote_k)
    else:
      draw = seeds.keyed(self.generator(data.name).generate, config.seed, seeds.SYNTHETIC_STREAM)
      confidence = None
      if self.use_filter:
        filter_params = self.params(self.layout.filter)
        confidence = lambda images, c: classifier_loop.predict(self.programs, filter_params, images)[0][:, c]
      store = methods_lib.ClassDrawStore(self.layout.synthetic_classes(data.name))
      last = max((c for c, a in enumerate(self.add) if a > 0), default=-1)

      def keep(c, class_draw):
        store.keep(c, class_draw)
        if c < last and stop.should_stop():
          raise stages.StageStopped(f"Stopped by {stop.received} while drawing the images of {data.name} "
                                    f"(classes up to {c} kept in {store.folder})")

      with preemption.StopSignal() as stop:  # a signal stops the stage between classes, not after all of them
        images, labels, info = methods_lib.sample_with_filter(draw, self.add, confidence, config.filter_confidence,
                                                              max_rounds=config.filter_rounds,
                                                              name=f"synthetic {data.name}", finished=store.load,
                                                              on_class=keep)
    fs.save_npz(self.layout.synthetic(data.name), image=images, label=labels)
    return {"method": data.name, "added_per_class": np.bincount(labels, minlength=self.num_classes).tolist(),
            **info}

  def training_set(self, method: methods_lib.Method):
    """(images, labels, inverse-frequency weights or None) of a method's classifier."""
    if method.loss.builds_on_plain:  # cRT and post-hoc adjustment keep the plain classifier's data
      method = methods_lib.get_method(method.plain)
    added = None
    if method.adds_images:
      arrays = fs.load_npz(self.layout.synthetic(method.data.name))
      added = (arrays["image"], arrays["label"])
      if method.group == "combined":
        added = methods_lib.combination_additions(added, self.combination_add)
    return methods_lib.training_set(method, self.data.train, added, num_classes=self.num_classes,
                                    fill_remainder=self.config.fill_remainder, seed=self.config.seed)

  def plain_params(self, method: methods_lib.Method, k: int):
    """The plain cross-entropy classifier of a method's data (kept by its own stage, else trained now)."""
    path = self.layout.classifier_params(method.plain, k)
    if fs.exists(path):
      return self.params(path)
    plain = methods_lib.get_method(method.plain)
    images, labels, weights = self.training_set(plain)
    params = self.classifiers.fit(plain.loss, images, labels, weights, seed=seeds.classifier(self.config.seed, k),
                                  name=f"{plain.name} seed {k}")
    stages.save_payload(path, params)
    return params

  def classifier(self, method: methods_lib.Method, k: int) -> dict:
    images, labels, weights = self.training_set(method)
    seed = seeds.classifier(self.config.seed, k)
    name = f"{method.name} seed {k}"
    start = time.perf_counter()
    record = {"method": method.name, "seed_index": k, "seed": seed, "train_examples": int(len(labels))}
    label_counts = np.bincount(labels, minlength=self.num_classes)
    predict_part, tau = method.loss, None
    if method.loss.retrain_head:
      params = self.classifiers.retrain_head(self.plain_params(method, k), images, labels, seed=seed, name=name)
      predict_part = methods_lib.CROSS_ENTROPY
    elif method.loss.posthoc:
      params = self.plain_params(method, k)
      predict_part = methods_lib.CROSS_ENTROPY
      tau = self.classifiers.posthoc_tau(params, self.data.validation, label_counts)
      record["tau"] = tau
    elif self.stacked:
      params = self.fit_stacked(method, k, images, labels, weights)
    else:
      params = self.classifiers.fit(method.loss, images, labels, weights, seed=seed, name=name)
    if method.name in self.kept:
      stages.save_payload(self.layout.classifier_params(method.name, k), params)
    record["train_seconds"] = time.perf_counter() - start
    if method.loss.deferred != "none":
      record["drw_start_step"] = self.classifiers.switch_step(self.config.classifier.num_steps)
    for test_set, (test_images, test_labels) in self.test_sets.items():
      probs = self.classifiers.probabilities(predict_part, params, test_images)
      if tau is not None:
        probs = classifiers_lib.adjust(probs, label_counts, tau)
      record[test_set] = self.classifiers.score(test_labels, probs, self.real_counts)
    return record

  def fit_stacked(self, method: methods_lib.Method, k: int, images, labels, weights):
    """Seed k's classifier; the first unfinished seed of a method trains it with every later unfinished one."""
    if (method.name, k) not in self._waiting:
      pending = [j for j in range(k, self.config.num_seeds)
                 if j == k or not fs.exists(self.layout.classifier(method.name, j))]
      trained = self.classifiers.fit_seeds(method.loss, images, labels, weights,
                                           seeds=[seeds.classifier(self.config.seed, j) for j in pending],
                                           name=f"{method.name} seeds {pending[0]}-{pending[-1]}")
      self._waiting.update({(method.name, j): v for j, v in zip(pending, trained)})
    return self._waiting.pop((method.name, k))

  def generated_quality(self, name: str) -> dict:
    generator = self.generator(name)
    draw = seeds.keyed(generator.generate, self.config.seed, seeds.QUALITY_STREAM)
    record, grid = self.quality().run(name, draw, generator.classes)
    fs.save_npz(self.layout.quality_samples(name), **grid)
    return record


def run_benchmark(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                  overwrite: bool = False, provenance: dict | None = None,
                  stage_seconds: dict[str, float] | None = None, classifier_seeds: str = "auto",
                  class_generators: str = "auto") -> dict[str, Any]:
  """Runs (or resumes) the whole benchmark and writes the report.

  Args:
    config: the benchmark config (data, methods, classifier, generator sections).
    workdir: the run folder (see `layout`).
    idx_dir: offline IDX folder (None: TFDS).
    overwrite: discard an earlier run with a different config.
    provenance: {'command', 'git_commit'} of the run, recorded in the report.
    stage_seconds: if given, filled with the wall time of each stage this call computed (benchmarks
      extrapolate from it; results.json stays free of timings so reruns reproduce it).
    classifier_seeds: how each method's seeds train (CLASSIFIER_SEEDS); the results agree to float
      rounding either way.
    class_generators: how the per-class generators of one batch size train (CLASS_GENERATORS): one
      vmapped program or one after another; they agree to float rounding either way.

  Returns:
    results.json's content, or {'stopped': True} when a signal stopped the run.
  """
  if jax.process_count() > 1:
    raise ValueError("the imbalance benchmark runs in one process; drop --distributed")
  mesh = parallel.make_mesh()
  platform = mesh.devices.flat[0].platform
  stacked = stack_seeds(classifier_seeds, platform)
  stack_classes = stack_seeds(class_generators, platform, "class_generators")
  plan = validation.validate(config, mesh.size)
  workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=layout_lib.OUTPUTS,
                      resumable_fields=validation.RESUMABLE_FIELDS, migrations=validation.MIGRATIONS,
                      project=validation.shared_generator_sections)
  data = splits.load_splits(sources.DataSource.from_config(config), imbalance_spec=plan.imbalance, seed=config.seed,
                            idx_dir=idx_dir, test_examples=config.test_examples,
                            test_profile="" if config.profile == imbalance.AS_IS else config.test_profile,
                            validation_per_class=config.validation_per_class, cache_dir=splits.data_dir(workdir))
  splits.write_class_names(workdir, data.info)
  layout = layout_lib.Layout(workdir)
  study = Study(config, plan, data, layout, mesh, stacked=stacked, stack_classes=stack_classes)
  logging.info("Imbalanced %s train set: %s images per class; adding %s", config.dataset, study.counts.tolist(),
               study.add.tolist())
  runner = stages.Runner(study.stages())
  with preemption.StopSignal() as stop:
    finished = runner.run(stop)
  if stage_seconds is not None:
    stage_seconds.update(runner.seconds)
  if not finished:
    return {"stopped": True}
  results = report.collect(config, plan.methods, study.counts, {t: a[1] for t, a in study.test_sets.items()},
                           layout, provenance)
  results["classifier_recipe"] = study.classifiers.describe()
  report.write(layout, results, plan.methods)
  return results
