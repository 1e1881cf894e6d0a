"""The one-class anomaly-detection protocol behind the anomaly entrypoint.

For each normal class c and each scorer, one stage: train the scorer's model on
the class-c images of the train split only, score every (selected) test image,
and compute the AUROC of "not class c" against the scores. Each stage owns
`workdir/stages/class<c>_<scorer>/` (config.json, checkpoints, metrics.jsonl,
scores.npy); its result.json marks it complete (`gan_jax.stages`). A rerun
skips complete stages and resumes an interrupted one from its checkpoint.

Scorers (higher = more anomalous):
  ae:  ||x - D(E(x))||^2 of the convolutional autoencoder.
  vae: the negative ELBO (nats) of the VAE, averaged over posterior samples.
  aae: ||x - R(x)||^2 + lambda * (-log D(R(x))) of the adversarially trained
       autoencoder (see `vae_step.per_example_metrics` for the references).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import checks
from gan_jax import fs
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import stages as stages_lib
from gan_jax import workdir as workdir_lib
from gan_jax.data import batch_order
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.protocols.anomaly import report
from gan_jax.protocols.anomaly import scoring
from gan_jax.train import vae_loop
from gan_jax.train import vae_step

# scorer -> (model trained, per-example metric used as the anomaly score)
SCORERS = {"ae": ("ae", "squared_error"), "vae": ("vae", "neg_elbo"), "aae": ("aae", "aae_score")}
STAGES_DIR = "stages"
STAGE_RESULT = "result.json"
STAGE_SCORES = "scores.npy"
# Top-level fields a rerun may change: they select which stages run, not what a stage computes.
RESUMABLE_FIELDS = ("classes", "scorers", "figure_class", "num_extremes")
OUTPUTS = (STAGES_DIR, "results.json", "results.md")


def parse_classes(value: Any, num_classes: int) -> list[int]:
  """Normal classes to run: 'all' or any comma-list form of integers in [0, num_classes)."""
  if checks.parse_list(value) == ["all"]:
    return list(range(num_classes))
  classes = checks.parse_int_list(value, "classes")
  if any(not 0 <= c < num_classes for c in classes) or not classes or len(set(classes)) != len(classes):
    raise ValueError(f"config.classes must be distinct integers in [0, {num_classes}), got {value!r}")
  return classes


def parse_scorers(value: Any) -> list[str]:
  return checks.choices(value, list(SCORERS), "scorer(s)")


def stage_name(normal_class: int, scorer: str) -> str:
  return f"class{normal_class}_{scorer}"


def stage_fingerprint(config: ml_collections.ConfigDict, scorer: str, normal_class: int) -> dict:
  """What a stage's result depends on; a cached result is reused only when it matches."""
  train = {**workdir_lib.config_to_dict(config.train), "model": SCORERS[scorer][0], "dataset": config.dataset,
           "seed": config.seed, **sources.non_default_settings(config)}
  return {"train": train, "class": normal_class, "scorer": scorer, "test_examples": int(config.test_examples)}


def validate(config: ml_collections.ConfigDict, num_devices: int) -> tuple[sources.DatasetInfo, list[int], list[str]]:
  """Checks every field of every stage before any runs; returns (info, classes, scorers)."""
  info = sources.get_dataset_info(sources.DataSource.from_config(config))
  classes = parse_classes(config.classes, info.num_classes)
  scorers = parse_scorers(config.scorers)
  checks.non_negative(config.test_examples, "test_examples")
  checks.positive(config.num_extremes, "num_extremes")
  for scorer in scorers:
    vae_loop.validate_training(config.train, SCORERS[scorer][0], info.image_shape, info.num_classes, num_devices,
                               "train.")
  return info, classes, scorers


class _Stage:
  """One (class, scorer) stage: trains the scorer's model on the normal class and scores the test set."""

  def __init__(self, config, programs, train_images, test, normal_class: int, scorer: str, folder: str):
    self.config, self.programs, self.test = config, programs, test
    self.normal_images, self.normal_class, self.scorer, self.folder = train_images, normal_class, scorer, folder

  def __call__(self) -> dict:
    name = fs.basename(self.folder)
    dataset = batch_order.InMemoryDataset(self.normal_images,
                                          np.full((len(self.normal_images),), self.normal_class, np.int32))
    fitted = vae_loop.fit(self.config.train, self.programs, dataset, self.folder, seed=self.config.seed, name=name)
    if fitted.stopped:
      raise stages_lib.StageStopped(f"Stopped by {fitted.stopped_by} in stage {name}")
    key = jax.random.fold_in(vae_step.make_key(self.config.seed), 1000 + self.normal_class)
    test_images, test_labels = self.test
    metrics = vae_loop.evaluate(self.programs, fitted.state, test_images, test_labels,
                                self.config.train.eval_batch_size, key)
    scores = metrics[SCORERS[self.scorer][1]].astype(np.float64)
    targets = scoring.one_class_labels(test_labels, self.normal_class)
    result = {"class": self.normal_class, "scorer": self.scorer, "auroc": scoring.auroc(targets, scores),
              "num_train": int(len(self.normal_images)), "num_test_normal": int((targets == 0).sum()),
              "num_test_anomalous": int((targets == 1).sum()),
              "mean_score_normal": float(scores[targets == 0].mean()),
              "mean_score_anomalous": float(scores[targets == 1].mean()), "final_train": fitted.last_record}
    if jax.process_index() == 0:
      fs.save_npy(fs.join(self.folder, STAGE_SCORES), scores)  # before result.json, which marks the stage done
    logging.info("[%s] AUROC %.4f", name, result["auroc"])
    return result


def run_one_class(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                  overwrite: bool = False, provenance: dict | None = None) -> dict[str, Any]:
  """Runs (or finishes) every (class, scorer) stage, then writes results.json, results.md and figures.

  Returns:
    results.json's content; {'stopped': True} when a signal interrupted a stage.
  """
  mesh = parallel.make_mesh()
  info, classes, scorers = validate(config, mesh.size)
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=OUTPUTS, resumable_fields=RESUMABLE_FIELDS,
                        migrations=vae_loop.MIGRATIONS)
  data = splits.load_splits(sources.DataSource.from_config(config), seed=config.seed, idx_dir=idx_dir,
                            test_examples=config.test_examples, cache_dir=splits.data_dir(workdir))
  if is_writer:
    splits.write_class_names(workdir, info)
  unit = lambda arrays: (sources.scale_images(arrays[0], (0.0, 1.0)), arrays[1])
  train_images, train_labels = unit(data.full_train)
  test = unit(data.test)
  programs = {s: vae_loop.build_programs(config.train, mesh, model=SCORERS[s][0], image_shape=info.image_shape,
                                         num_classes=info.num_classes) for s in scorers}
  plan = []
  for c in classes:
    for s in scorers:
      folder = fs.join(workdir, STAGES_DIR, stage_name(c, s))
      plan.append(stages_lib.Stage(stage_name(c, s), fs.join(folder, STAGE_RESULT),
                                   _Stage(config, programs[s], train_images[train_labels == c], test, c, s, folder),
                                   work=config.train.num_steps, fingerprint=stage_fingerprint(config, s, c),
                                   folder=folder))
  runner = stages_lib.Runner(plan, writer=is_writer)
  with preemption.StopSignal() as stop:
    if not runner.run(stop):
      return {"stopped": True}
  results = summarize_stages(config, classes, scorers, runner, info.class_names)
  if is_writer:
    write_reports(workdir, config, results, classes, scorers, test, info.class_names, provenance)
  return results


def summarize_stages(config, classes: Sequence[int], scorers: Sequence[str], runner: stages_lib.Runner,
                     class_names: Sequence[str]) -> dict[str, Any]:
  """results.json: AUROC per scorer and class, the means, and which stages were cached."""
  records = {s.name: stages_lib.load_payload(s.marker) for s in runner.stages}
  status = {**{n: "cached" for n in runner.cached}, **{n: "computed" for n in runner.computed}}
  aurocs = {s: {c: records[stage_name(c, s)]["auroc"] for c in classes} for s in scorers}
  means = scoring.summarize(aurocs)
  return {
      "dataset": config.dataset, "classes": list(classes), "scorers": list(scorers),
      "class_names": [class_names[c] for c in classes],
      "auroc": {s: {str(c): v for c, v in per_class.items()} for s, per_class in aurocs.items()},
      "mean_auroc": means, "best_scorer": max(means, key=means.get),
      "stages_computed": sorted(runner.computed), "stages_cached": sorted(runner.cached),
      "stages": {n: {**{k: r[k] for k in ("auroc", "num_train", "num_test_normal", "num_test_anomalous")},
                     "status": status[n]} for n, r in records.items()},
  }


def write_reports(workdir: str, config, results: dict, classes: Sequence[int], scorers: Sequence[str],
                  test: tuple[np.ndarray, np.ndarray], class_names: Sequence[str], provenance: dict | None) -> None:
  """results.json, results.md, and the histogram / extremes figures of one class."""
  test_images, test_labels = test
  figure_class = int(config.figure_class) if int(config.figure_class) in classes else classes[0]
  scores = {s: fs.load_npy(fs.join(workdir, STAGES_DIR, stage_name(figure_class, s), STAGE_SCORES)) for s in scorers}
  targets = scoring.one_class_labels(test_labels, figure_class)
  title = f"{config.dataset}: normal class {figure_class} ({class_names[figure_class]})"
  report.score_histogram(fs.join(workdir, "score_histogram.png"), scores, targets, title)
  report.extremes_grid(fs.join(workdir, "extremes.png"), scores, test_images, int(config.num_extremes))
  fs.write_text(fs.join(workdir, "results.md"), report.markdown(
      config.dataset, results, scorers, class_names, len(test_labels), int(config.train.num_steps), figure_class,
      provenance))
  fs.write_json(fs.join(workdir, "results.json"), results)
