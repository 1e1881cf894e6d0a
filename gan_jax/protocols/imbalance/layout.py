"""Where every result of an imbalance benchmark run lives in its workdir (the one module that knows).

  config.json                          the run's config
  models/evaluator.msgpack             evaluator CNN on the full balanced train split (Frechet features)
  models/filter.msgpack                class-weighted CNN on the imbalanced set (confidence filter)
  generators/<method>/                 a generator's training run (per-class methods: class<c>/), done.json when finished;
                                       stacked_<c>-<c>.../: per-class models trained as one program
  synthetic/<method>.npz, .json        the images a method adds; the .json (counts, filter acceptance) marks it done
  synthetic/<method>_classes/c<c>.npz  the classes drawn so far by an unfinished synthetic stage (a rerun keeps them)
  classifiers/<method>/seed<k>.json    metrics of one classifier run on both test sets (.msgpack: its
                                       parameters, kept where cRT or post-hoc adjustment builds on them)
  quality/real.json, <method>.json     per-class Frechet distance, evaluator accuracy, CAS; <method>_samples.npz
  results.json|csv|md, *.png           the report
"""
from __future__ import annotations

import dataclasses

from gan_jax import fs

# What a run leaves in its workdir (removed by --overwrite).
OUTPUTS = ("models", "generators", "synthetic", "classifiers", "quality", "results.json", "results.csv", "results.md")
DONE_FILE = "done.json"


@dataclasses.dataclass(frozen=True)
class Layout:
  """The paths of one run folder."""
  workdir: str

  def _at(self, *parts: str) -> str:
    return fs.join(self.workdir, *parts)

  @property
  def evaluator(self) -> str:
    return self._at("models", "evaluator.msgpack")

  @property
  def filter(self) -> str:
    return self._at("models", "filter.msgpack")

  def generator(self, method: str, class_index: int | None = None) -> str:
    """A generator's run folder: generators/<method>, or generators/<method>/class<c> for per-class models."""
    return self._at("generators", method) if class_index is None else self._at("generators", method,
                                                                              f"class{class_index}")

  def generator_group(self, method: str, class_indices) -> str:
    """The run folder of per-class models trained together (stacked checkpoints, mean metrics)."""
    return self._at("generators", method, "stacked_" + "-".join(str(int(c)) for c in class_indices))

  def generator_done(self, method: str, class_index: int | None = None) -> str:
    return fs.join(self.generator(method, class_index), DONE_FILE)

  def synthetic(self, method: str) -> str:
    return self._at("synthetic", f"{method}.npz")

  def synthetic_classes(self, method: str) -> str:
    """The folder of the classes an unfinished synthetic stage has drawn (removed when the stage is done)."""
    return self._at("synthetic", f"{method}_classes")

  def synthetic_info(self, method: str) -> str:
    return self._at("synthetic", f"{method}.json")

  def classifier(self, method: str, seed_index: int) -> str:
    return self._at("classifiers", method, f"seed{seed_index}.json")

  def classifier_params(self, method: str, seed_index: int) -> str:
    """The trained parameters of a plain classifier that cRT and post-hoc adjustment build on."""
    return self._at("classifiers", method, f"seed{seed_index}.msgpack")

  def quality(self, source: str) -> str:
    return self._at("quality", f"{source}.json")

  def quality_samples(self, method: str) -> str:
    return self._at("quality", f"{method}_samples.npz")

  @property
  def results_json(self) -> str:
    return self._at("results.json")

  @property
  def results_csv(self) -> str:
    return self._at("results.csv")

  @property
  def results_md(self) -> str:
    return self._at("results.md")

  def figure(self, name: str) -> str:
    return self._at(name)
