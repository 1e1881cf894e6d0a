"""The one-class anomaly-detection protocol behind `experiments.anomaly`.

For each normal class c and each scorer, one *stage*: train the scorer's model on
the class-c images of the train split only, score every (selected) test image,
and compute the AUROC of "not class c" against the scores. Each stage lives in
`workdir/stages/class<c>_<scorer>/` (checkpoints, metrics.jsonl, scores.npy) and
is complete once its `result.json` exists; a rerun skips complete stages and
resumes an interrupted one from its checkpoint.

Scorers (higher = more anomalous):
  ae:  ||x - D(E(x))||^2 of the convolutional autoencoder.
  vae: the negative ELBO (nats) of the VAE, averaged over posterior samples.
  aae: ||x - R(x)||^2 + lambda * (-log D(R(x))) of the adversarially trained
       autoencoder (see `vae_step.per_example_metrics` for the references).
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import anomaly
from gan_jax import data
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.train import vae_loop
from gan_jax.train import vae_step

# scorer -> (model trained, per-example metric used as the anomaly score)
SCORERS = {"ae": ("ae", "squared_error"), "vae": ("vae", "neg_elbo"), "aae": ("aae", "aae_score")}
STAGES_DIR = "stages"
STAGE_RESULT = "result.json"
STAGE_SCORES = "scores.npy"
# Top-level fields a rerun may change: they select which stages run, not what a stage computes.
RESUMABLE_FIELDS = ("classes", "scorers", "figure_class", "num_extremes")


def parse_list(value: Any) -> list[str]:
  """A tuple/list, a single value, or a comma-separated string -> list of stripped strings."""
  if isinstance(value, str):
    return [v.strip() for v in value.strip("()[] ").split(",") if v.strip()]
  if isinstance(value, (list, tuple)):
    return [str(v).strip() for v in value]
  return [str(value)]


def parse_classes(value: Any, num_classes: int) -> list[int]:
  """Normal classes to run: 'all' or any `parse_list` form of integers in [0, num_classes)."""
  items = parse_list(value)
  if items == ["all"]:
    return list(range(num_classes))
  try:
    classes = [int(v) for v in items]
  except ValueError as e:
    raise ValueError(f"config.classes must be 'all' or integers, got {value!r}") from e
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad or not classes or len(set(classes)) != len(classes):
    raise ValueError(f"config.classes must be distinct integers in [0, {num_classes}), got {value!r}")
  return classes


def parse_scorers(value: Any) -> list[str]:
  scorers = parse_list(value)
  unknown = [s for s in scorers if s not in SCORERS]
  if unknown or not scorers:
    raise ValueError(f"Unknown scorer(s) {unknown or value!r}; choose from: {', '.join(SCORERS)}")
  return scorers


def stage_config(config: ml_collections.ConfigDict, scorer: str) -> ml_collections.ConfigDict:
  """The training config of one scorer's stages: config.train with the model, data set and seed filled in."""
  train = ml_collections.ConfigDict(config.train.to_dict())
  train.model = SCORERS[scorer][0]
  train.dataset = config.dataset
  train.seed = config.seed
  return train


def stage_name(normal_class: int, scorer: str) -> str:
  return f"class{normal_class}_{scorer}"


def stage_fingerprint(config: ml_collections.ConfigDict, scorer: str, normal_class: int) -> dict:
  """What a stage's result depends on; a cached result is reused only when it matches."""
  return {"train": workdir_lib.config_to_dict(stage_config(config, scorer)), "class": normal_class,
          "scorer": scorer, "test_examples": int(config.test_examples)}


def load_stage(stage_dir: str, fingerprint: dict) -> dict | None:
  """The stage's recorded result if it is complete and was computed with `fingerprint`, else None."""
  path = os.path.join(stage_dir, STAGE_RESULT)
  if not os.path.exists(path) or not os.path.exists(os.path.join(stage_dir, STAGE_SCORES)):
    return None
  result = workdir_lib.read_json(path)
  return result if result.get("fingerprint") == fingerprint else None


def run_stage(programs: vae_loop.Programs, train: ml_collections.ConfigDict, normal_images: np.ndarray,
              test_images: np.ndarray, test_labels: np.ndarray, normal_class: int, scorer: str, stage_dir: str,
              fingerprint: dict, mesh) -> dict | None:
  """Trains one stage's model on the normal class, scores the test set, records the result (None if stopped)."""
  name = os.path.basename(stage_dir)
  dataset = data.InMemoryDataset(normal_images, np.full((len(normal_images),), normal_class, np.int32))
  fitted = vae_loop.fit(train, programs, dataset, stage_dir, mesh, name=name)
  if fitted.stopped:
    return None
  key = jax.random.fold_in(vae_step.make_key(train.seed), 1000 + normal_class)
  metrics = vae_loop.evaluate(programs, fitted.state, test_images, test_labels, train.eval_batch_size, key, mesh)
  scores = metrics[SCORERS[scorer][1]].astype(np.float64)
  targets = anomaly.one_class_labels(test_labels, normal_class)
  result = {"class": normal_class, "scorer": scorer, "auroc": anomaly.auroc(targets, scores),
            "num_train": int(len(normal_images)), "num_test_normal": int((targets == 0).sum()),
            "num_test_anomalous": int((targets == 1).sum()),
            "mean_score_normal": float(scores[targets == 0].mean()),
            "mean_score_anomalous": float(scores[targets == 1].mean()),
            "final_train": fitted.last_record, "fingerprint": fingerprint}
  if jax.process_index() == 0:
    # Scores first, result last: result.json marks the stage complete.
    tmp = os.path.join(stage_dir, "scores.tmp.npy")
    np.save(tmp, scores)
    os.replace(tmp, os.path.join(stage_dir, STAGE_SCORES))
    workdir_lib.write_json(os.path.join(stage_dir, STAGE_RESULT), result)
  logging.info("[%s] AUROC %.4f", name, result["auroc"])
  return result


def run_one_class(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
  """Runs (or finishes) every (class, scorer) stage, then writes results.json, results.md and figures.

  Returns:
    results.json's content; with "stopped": True when a signal interrupted a stage.
  """
  info = data.get_dataset_info(config.dataset)
  classes = parse_classes(config.classes, info.num_classes)
  scorers = parse_scorers(config.scorers)
  for scorer in scorers:
    vae_loop.validate_config(stage_config(config, scorer))
  mesh = parallel.make_mesh()
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=(STAGES_DIR, "results.json", "results.md"),
                        resumable_fields=RESUMABLE_FIELDS)
  train_images, train_labels = vae_loop.load_split(config, "train", idx_dir)
  test_images, test_labels = vae_loop.load_split(config, "test", idx_dir)
  keep = anomaly.evaluation_subset(len(test_labels), config.test_examples, config.seed)
  test_images, test_labels = test_images[keep], test_labels[keep]

  programs: dict[str, vae_loop.Programs] = {}
  stages: dict[str, dict] = {}
  for normal_class in classes:
    for scorer in scorers:
      name = stage_name(normal_class, scorer)
      stage_dir = os.path.join(workdir, STAGES_DIR, name)
      fingerprint = stage_fingerprint(config, scorer, normal_class)
      result = load_stage(stage_dir, fingerprint)
      if result is not None:
        logging.info("[%s] cached: AUROC %.4f", name, result["auroc"])
        stages[name] = {**result, "status": "cached"}
        continue
      if is_writer and os.path.exists(os.path.join(stage_dir, STAGE_RESULT)):
        shutil.rmtree(stage_dir)  # a result of another config: its checkpoints are stale too
      train = stage_config(config, scorer)
      if scorer not in programs:  # compiled once, reused by every class
        programs[scorer] = vae_loop.build_programs(train, mesh)
      result = run_stage(programs[scorer], train, train_images[train_labels == normal_class], test_images,
                         test_labels, normal_class, scorer, stage_dir, fingerprint, mesh)
      if result is None:
        return {"stopped": True, "stopped_in": name}
      stages[name] = {**result, "status": "computed"}
  results = summarize_stages(config, classes, scorers, stages, info.class_names)
  if is_writer:
    write_reports(workdir, config, results, classes, scorers, test_images, test_labels, info.class_names)
  return results


def summarize_stages(config, classes: Sequence[int], scorers: Sequence[str], stages: dict[str, dict],
                     class_names: Sequence[str]) -> dict[str, Any]:
  """results.json: AUROC per scorer and class, the means, and which stages were cached."""
  aurocs = {s: {c: stages[stage_name(c, s)]["auroc"] for c in classes} for s in scorers}
  means = anomaly.summarize(aurocs)
  return {
      "dataset": config.dataset, "classes": list(classes), "scorers": list(scorers),
      "class_names": [class_names[c] for c in classes],
      "auroc": {s: {str(c): v for c, v in per_class.items()} for s, per_class in aurocs.items()},
      "mean_auroc": means, "best_scorer": max(means, key=means.get),
      "stages_computed": sorted(n for n, r in stages.items() if r["status"] == "computed"),
      "stages_cached": sorted(n for n, r in stages.items() if r["status"] == "cached"),
      "stages": {n: {k: r[k] for k in ("auroc", "status", "num_train", "num_test_normal", "num_test_anomalous")}
                 for n, r in stages.items()},
  }


def write_reports(workdir: str, config, results: dict, classes: Sequence[int], scorers: Sequence[str],
                  test_images: np.ndarray, test_labels: np.ndarray, class_names: Sequence[str]) -> None:
  """results.json, results.md, and the histogram / extremes figures of one class."""
  figure_class = int(config.figure_class) if int(config.figure_class) in classes else classes[0]
  scores = {s: np.load(os.path.join(workdir, STAGES_DIR, stage_name(figure_class, s), STAGE_SCORES))
            for s in scorers}
  targets = anomaly.one_class_labels(test_labels, figure_class)
  title = f"{config.dataset}: normal class {figure_class} ({class_names[figure_class]})"
  anomaly.score_histogram(os.path.join(workdir, "score_histogram.png"), scores, targets, title)
  anomaly.extremes_grid(os.path.join(workdir, "extremes.png"), scores, test_images, int(config.num_extremes))
  aurocs = {s: {int(c): v for c, v in per_class.items()} for s, per_class in results["auroc"].items()}
  rows = ", ".join(f"{s.upper()} most / least anomalous" for s in scorers)
  report = [f"# One-class anomaly detection on {config.dataset}", "",
            f"Test AUROC per normal class (train on that class only; every other test class is anomalous). "
            f"{len(test_labels)} test images, {int(config.train.num_steps)} training steps per stage.", "",
            anomaly.markdown_table(aurocs, scorers, class_names),
            f"Best scorer: **{results['best_scorer'].upper()}** "
            f"(mean AUROC {results['mean_auroc'][results['best_scorer']]:.4f}).", "",
            f"`score_histogram.png`, `extremes.png`: normal class {figure_class}; extremes rows: {rows}.", ""]
  tmp = os.path.join(workdir, "results.md.tmp")
  with open(tmp, "w") as f:
    f.write("\n".join(report))
  os.replace(tmp, os.path.join(workdir, "results.md"))
  workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
