"""The imbalance benchmark end to end on its :smoke config: outputs, caching, exact resume, bad input."""
import csv
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from experiments.configs import imbalance as imbalance_config
from gan_jax import evaluation
from gan_jax import fs
from gan_jax.protocols.imbalance import methods
from gan_jax.protocols.imbalance import pipeline
from gan_jax.protocols.imbalance import report


# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices).
MESH_DEVICES = 2
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NAMES = methods.parse_methods(imbalance_config.get_config("smoke").methods)
RECORDS = {n: methods.get_method(n) for n in NAMES}
GENERATIVE = [n for n, m in RECORDS.items() if m.group == "generative"]
DATA_PARTS_ADDING = sorted({m.data.name for m in RECORDS.values() if m.adds_images})


def _run_elsewhere(config, workdir, idx_dir, cwd):
  """run_benchmark from an empty working directory, which must stay empty (outputs go to `workdir` only)."""
  os.chdir(cwd)
  try:
    results = pipeline.run_benchmark(config, workdir, idx_dir=str(idx_dir))
  finally:
    os.chdir(ROOT)
  assert os.listdir(cwd) == []
  return results


@pytest.fixture(scope="module")
def smoke(idx_dir, tmp_path_factory):
  """The :smoke run, every method (on the local disk: the bucket test below covers the path layer)."""
  config = imbalance_config.get_config("smoke")
  workdir = str(tmp_path_factory.mktemp("smoke") / "run")
  return config, workdir, _run_elsewhere(config, workdir, idx_dir, tmp_path_factory.mktemp("cwd"))


def _files(workdir):
  """Every file below `workdir`, relative to it, sorted."""
  return sorted(os.path.relpath(os.path.join(root, name), workdir) for root, _, names in os.walk(workdir)
                for name in names)


def read(workdir, *parts):
  return fs.read_text(fs.join(workdir, *parts))


def image(workdir, name):
  return Image.open(io.BytesIO(fs.read_bytes(fs.join(workdir, name))))


def test_results_have_every_method_metric_and_test_set(smoke):
  config, workdir, results = smoke
  assert json.loads(read(workdir, "results.json")) == json.loads(json.dumps(results))
  assert list(results["methods"]) == NAMES
  assert {m.group for m in RECORDS.values()} == set(methods.GROUPS)  # the smoke run covers every group
  assert set(methods.LOSS_PARTS) - {"cross_entropy", "class_weight"} == {
      m.loss.name for m in RECORDS.values() if m.group == "combined"}  # every loss in a combination
  assert results["train_counts"] == [100, 50, 40, 30, 25, 20, 15, 12, 10, 8]
  assert results["test_counts"]["imbalanced"] == [50, 30, 20, 15, 10, 8, 6, 5, 4, 3]
  assert sum(results["test_counts"]["balanced"]) == 1_000
  for name, entry in results["methods"].items():
    for test_set in report.TEST_SETS:
      summary = entry[test_set]
      for metric in evaluation.METRICS:
        assert summary[metric]["n"] == config.num_seeds and len(summary[metric]["values"]) == config.num_seeds
        assert 0.0 <= summary[metric]["mean"] <= 100.0
      assert len(summary["per_class_recall"]["mean"]) == 10
      # The mean confusion matrix's rows hold every test image of the class.
      np.testing.assert_allclose(np.sum(summary["confusion_mean"], axis=1), results["test_counts"][test_set])
      assert ("paired_vs_none" in summary) == (name != "none")
      assert set(summary["shot_accuracy"]) == {"many", "medium", "few"} and 0.0 <= summary["ece"]["mean"] <= 100.0
      if "paired_vs_best_loss" in summary:
        reference = summary["paired_vs_best_loss"]["reference"]
        assert RECORDS[reference].group == "loss" and reference != name
  paired = results["methods"]["smote"]["balanced"]["paired_vs_none"]["accuracy"]
  expected = np.subtract(results["methods"]["smote"]["balanced"]["accuracy"]["values"],
                         results["methods"]["none"]["balanced"]["accuracy"]["values"])
  np.testing.assert_allclose(paired["differences"], expected)
  assert "jax" in results["versions"] and results["config"]["profile"] == config.profile
  for test_set in report.TEST_SETS:
    answer = results["verdict"][test_set]
    entries = results["methods"]
    means = {m: entries[m][test_set]["balanced_accuracy"]["mean"] for m in entries}
    assert answer["best_classic"] == max(("class_weight", "random_oversample", "smote"), key=means.get)
    assert answer["best_generative"] == max(GENERATIVE, key=means.get)
    expected = np.subtract(entries[answer["best_generative"]][test_set]["balanced_accuracy"]["values"],
                           entries[answer["best_classic"]][test_set]["balanced_accuracy"]["values"])
    np.testing.assert_allclose(answer["paired"]["differences"], expected)
    assert answer["generative_wins"] == (answer["paired"]["ci_low"] > 0)
    best_loss = max((n for n, m in RECORDS.items() if m.group == "loss"), key=means.get)
    assert answer["loss_vs_classic"]["method"] == best_loss
    assert answer["loss_vs_classic"]["reference"] == max(("class_weight", "random_oversample"), key=means.get)
    combination = answer["combination_vs_loss"]
    assert combination["reference"] == best_loss
    assert combination["method"] == max((n for n, m in RECORDS.items() if m.group == "combined"), key=means.get)
    assert combination["wins"] == (combination["paired"]["ci_low"] > 0)
  recipe = results["classifier_recipe"]
  assert (recipe["optimizer"], recipe["schedule"], recipe["augment"]) == ("sgd", "step", "translate")
  assert recipe["drw_start_step"] == round(0.8 * config.classifier.num_steps)
  taus = results["methods"]["logit_adjustment_posthoc"]["posthoc_tau"]
  assert len(taus) == config.num_seeds and all(t in recipe["posthoc_taus"] for t in taus)


def test_every_synthetic_set_fills_the_classes_to_n_max(smoke):
  config, workdir, results = smoke
  counts = results["train_counts"]
  add = methods.synthetic_counts(counts, 1.0).tolist()
  combination = np.round(config.combination_ratio * np.asarray(add)).astype(int)
  for name, method in RECORDS.items():
    entry = results["methods"][name]
    if not method.adds_images or method.loss.builds_on_plain:
      # cRT and post-hoc adjustment keep the data of their plain classifier.
      plain = RECORDS[method.plain] if method.loss.builds_on_plain else method
      assert ("synthetic" in entry) == plain.adds_images
      if not plain.adds_images:
        assert entry["train_examples"] == sum(counts)
        continue
    assert entry["synthetic"]["added_per_class"] == add
    if method.group == "combined" and not method.loss.builds_on_plain:
      assert entry["train_examples"] == sum(counts) + int(combination.sum())  # the rest is the loss's job
    else:
      assert entry["train_examples"] == 10 * max(counts)
  for name in DATA_PARTS_ADDING:
    f = fs.load_npz(fs.join(workdir, "synthetic", f"{name}.npz"))
    assert f["image"].dtype == np.uint8 and f["image"].shape[1:] == (28, 28, 1)
    assert np.bincount(f["label"], minlength=10).tolist() == add
    if name in GENERATIVE:  # the smoke config filters by confidence, as the default does
      rates = results["methods"][name]["synthetic"]["acceptance_rate"]
      assert rates[0] is None and all(0.0 <= r <= 1.0 for r in rates[1:])
  assert fs.exists(fs.join(workdir, "models", "filter.msgpack"))
  # cRT and post-hoc adjustment built on the kept plain classifiers of their data.
  for k in range(config.num_seeds):
    assert fs.exists(fs.join(workdir, "classifiers", "none", f"seed{k}.msgpack"))
    assert fs.exists(fs.join(workdir, "classifiers", "cgan", f"seed{k}.msgpack"))
  assert not fs.exists(fs.join(workdir, "classifiers", "smote", "seed0.msgpack"))


def test_class_weight_changes_the_classifier(smoke):
  _, _, results = smoke
  none = results["methods"]["none"]["balanced"]["balanced_accuracy"]["values"]
  weighted = results["methods"]["class_weight"]["balanced"]["balanced_accuracy"]["values"]
  assert none != weighted


def test_generated_image_quality(smoke):
  _, _, results = smoke
  quality = results["quality"]
  assert set(quality) == {"real_train", *GENERATIVE}
  assert all(fd >= 0 for fd in quality["real_train"]["frechet_distance"])
  # The per-class DCGAN has no generator for the majority class, so no CAS either.
  assert quality["dcgan"]["frechet_distance"][0] is None and quality["dcgan"]["cas"] is None
  for name in ("cgan", "cvae"):
    assert all(fd is not None and fd >= 0 for fd in quality[name]["frechet_distance"])
    assert 0.0 <= quality[name]["cas"]["balanced_accuracy"] <= 100.0
  # A barely trained generator is far from the real images; real train images are close to real test ones.
  assert np.mean(quality["cgan"]["frechet_distance"]) > np.mean(quality["real_train"]["frechet_distance"])


def test_report_files_and_figures(smoke):
  _, workdir, results = smoke
  for name in NAMES:
    assert image(workdir, f"confusion_{name}.png").size[0] > 100
  for name in methods.DATA_PARTS:
    assert fs.exists(fs.join(workdir, f"samples_{name}.png")) == (name in DATA_PARTS_ADDING)
  # samples_<method>.png: one row of 28-pixel cells (2-pixel gaps) per class it adds images to.
  assert image(workdir, "samples_cgan.png").size[1] == 10 * 30 + 2
  assert image(workdir, "samples_smote.png").size[1] == 9 * 30 + 2
  assert fs.exists(fs.join(workdir, "per_class_recall.png"))
  rows = list(csv.DictReader(io.StringIO(read(workdir, "results.csv"))))
  assert len(rows) == len(NAMES) * 2 * len(evaluation.METRICS)
  row = next(r for r in rows if r["method"] == "cgan" and r["test_set"] == "balanced" and r["metric"] == "g_mean")
  assert float(row["mean"]) == pytest.approx(results["methods"]["cgan"]["balanced"]["g_mean"]["mean"], abs=1e-4)
  text = read(workdir, "results.md")
  assert text.count("| method | accuracy | balanced accuracy | macro F1 | G-mean |") == 2
  for name in NAMES:
    assert text.count(f"| {name} | ") >= 2
  assert "Does a long-tail loss beat class weights and oversampling?" in text
  assert "Do generated images add anything on top of the best loss?" in text
  assert text.count("| method | many | medium | few | ECE |") == 2
  answer = results["verdict"]["balanced"]
  assert f"**Best generative method (`{answer['best_generative']}`) minus best classic remedy " \
         f"(`{answer['best_classic']}`)" in text


def test_rerun_reuses_every_stage_and_a_lost_stage_is_recomputed_exactly(smoke, idx_dir, caplog):
  config, workdir, results = smoke
  stage_files = [f for f in _files(workdir) if f.split("/")[0] in ("classifiers", "synthetic", "quality", "models")]
  assert len(stage_files) > 2 * len(NAMES)
  lost = fs.join(workdir, "classifiers", "cgan", "seed1.json")
  contents = {f: fs.read_bytes(fs.join(workdir, f)) for f in stage_files if fs.join(workdir, f) != lost}
  before = fs.read_json(lost)
  fs.remove(lost)
  with caplog.at_level("INFO"):
    again = pipeline.run_benchmark(config, workdir, idx_dir=str(idx_dir))
  stage_lines = [r.getMessage() for r in caplog.records if "] " in r.getMessage() and "[stage " in r.getMessage()]
  assert [line for line in stage_lines if not line.endswith(": cached")] == [
      next(line for line in stage_lines if "classifier cgan seed 1: done in" in line)]
  after = fs.read_json(lost)
  assert after["balanced"] == before["balanced"] and after["imbalanced"] == before["imbalanced"]
  assert {f: fs.read_bytes(fs.join(workdir, f)) for f in contents} == contents

  def without_timing(entries):  # wall-clock seconds legitimately differ between runs
    return {m: {k: v for k, v in e.items() if k != "train_seconds_mean"} for m, e in entries.items()}

  assert without_timing(again["methods"]) == without_timing(results["methods"])


def test_a_run_in_a_bucket_writes_only_there_and_equals_the_local_run(smoke, gcs, idx_dir, tmp_path_factory):
  # Two methods through the emulated bucket (every output, checkpoints included, through the path
  # layer): the same stages as the local run's for those methods, so the same figures.
  local_config, _, local = smoke
  config = imbalance_config.get_config("smoke")
  config.methods = "none,cgan"
  workdir = f"{gcs.root}/imbalance/two_methods"
  results = _run_elsewhere(config, workdir, idx_dir, tmp_path_factory.mktemp("cwd"))
  assert json.loads(read(workdir, "results.json")) == json.loads(json.dumps(results))
  stored = gcs.files(workdir)
  assert {"results.md", "synthetic/cgan.npz", "classifiers/cgan/seed1.json"} <= set(stored)
  assert any(f.startswith("generators/cgan/checkpoints/") for f in stored)
  assert local_config.num_seeds == config.num_seeds
  for name in ("none", "cgan"):
    for test_set in report.TEST_SETS:
      assert (results["methods"][name][test_set]["balanced_accuracy"]["values"]
              == local["methods"][name][test_set]["balanced_accuracy"]["values"]), (name, test_set)


@pytest.mark.parametrize("field, value, message", [
    ("generators.cgan.loss", "nosuch", "Unknown generators.cgan.loss 'nosuch'; choose one of: hinge"),
    ("generators.cvae.latent_dim", 0, "config.generators.cvae.latent_dim must be a positive integer, got 0"),
    ("generators.dcgan.batch_size", 13, "generators.dcgan.batch_size=13 is not divisible by the number of devices"),
    ("generators.acgan.model", "cgan", "config.generators.acgan.model must be 'acgan'"),
    ("generators.cgan.conditioning", "film", "Unknown conditioning 'film'"),
    ("classifier.dropout_rate", 1.0, r"config.classifier.dropout_rate must lie in \[0, 1\)"),
    ("profile", "pareto", "Unknown imbalance profile 'pareto'"),
    ("test_profile", "1,2,3", "profile 'explicit' has 3 counts but the data has 10 classes"),
    ("fill_remainder", "smote", "Unknown fill_remainder 'smote'"),
    ("filter_rounds", 0, "config.filter_rounds must be a positive integer, got 0"),
])
def test_every_field_of_every_stage_is_checked_before_the_first(field, value, message, tmp_path):
  config = imbalance_config.get_config("smoke")
  *sections, leaf = field.split(".")
  node = config
  for name in sections:
    node = node[name]
  node[leaf] = value
  with pytest.raises(ValueError, match=message):
    pipeline.run_benchmark(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # refused before the workdir was even created


@pytest.mark.parametrize("flag, message", [
    ("--config.generators.cgan.loss=nosuch", "error: Unknown generators.cgan.loss 'nosuch'"),
    ("--config.generators.cgan.dataset=fashion_mnist",
     "error: Unknown config field 'generators.cgan.dataset': config.dataset is set at the top level"),
])
def test_bad_nested_fields_exit_2_in_one_line_within_seconds(flag, message, tmp_path):
  start = time.monotonic()
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.imbalance", "--config=experiments/configs/imbalance.py:smoke",
       f"--workdir={tmp_path / 'bad'}", flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert time.monotonic() - start < 20
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
      proc.stderr.strip().splitlines()[-1]]
  assert proc.stderr.strip().splitlines()[-1].startswith(message)


def test_changed_config_is_refused_and_bad_methods_are_one_line_errors(smoke, tmp_path):
  config, workdir, _ = smoke
  changed = imbalance_config.get_config("smoke")
  changed.classifier.num_steps = 31
  with pytest.raises(ValueError, match="different config"):
    pipeline.run_benchmark(changed, workdir)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.imbalance", "--config=experiments/configs/imbalance.py:smoke",
       f"--workdir={tmp_path / 'bad'}", "--config.methods=none,bagan"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: Unknown method(s) ['bagan']")
  assert "Traceback" not in proc.stderr


def test_a_synthetic_stage_takes_the_classes_a_stopped_run_drew(smoke, idx_dir):
  # A stopped draw left class 3 in synthetic/cgan_classes/; the rerun draws the other classes and
  # takes class 3 as it was (here a recognisable stand-in), then removes the folder.
  config, workdir, _ = smoke
  before = fs.load_npz(fs.join(workdir, "synthetic", "cgan.npz"))
  info = fs.read_json(fs.join(workdir, "synthetic", "cgan.json"))
  for suffix in (".npz", ".json"):
    fs.remove(fs.join(workdir, "synthetic", "cgan" + suffix))
  wanted = int(np.sum(before["label"] == 3))
  stand_in = np.full((wanted,) + before["image"].shape[1:], 7, np.uint8)
  folder = fs.join(workdir, "synthetic", "cgan_classes")
  fs.save_npz(fs.join(folder, "c3.npz"), image=stand_in, acceptance=np.float64(0.125), filled=np.int64(2))
  pipeline.run_benchmark(config, workdir, idx_dir=str(idx_dir))
  after = fs.load_npz(fs.join(workdir, "synthetic", "cgan.npz"))
  redone = fs.read_json(fs.join(workdir, "synthetic", "cgan.json"))
  np.testing.assert_array_equal(after["image"][after["label"] == 3], stand_in)
  assert redone["acceptance_rate"][3] == 0.125 and redone["filled"][3] == 2
  others = after["label"] != 3
  np.testing.assert_array_equal(after["image"][others], before["image"][before["label"] != 3])
  assert [a for c, a in enumerate(redone["acceptance_rate"]) if c != 3] == [
      a for c, a in enumerate(info["acceptance_rate"]) if c != 3]
  assert not fs.exists(folder)


def test_stacked_class_generators_reproduce_the_sequential_ones(smoke, idx_dir, caplog):
  # Rewrites two per-class DCGANs (nothing after them reruns: their synthetic stage is cached). The
  # classes of one batch size (1-9, all at batch 8) train as one vmapped program; the unfinished
  # ones end where their own runs ended, the finished ones (1-7) keep their folders as they are.
  config, workdir, _ = smoke
  classes = (8, 9)
  folder = lambda c: fs.join(workdir, "generators", "dcgan", f"class{c}")
  before = {c: fs.read_json(fs.join(folder(c), "done.json")) for c in classes}
  kept_record = fs.read_bytes(fs.join(folder(1), "final_metrics.json"))
  for c in classes:
    fs.remove(folder(c))
  with caplog.at_level("INFO"):
    pipeline.run_benchmark(config, workdir, idx_dir=str(idx_dir), class_generators="stacked")
  messages = [r.getMessage() for r in caplog.records]
  assert any("[dcgan classes 1,2,3,4,5,6,7,8,9] step 10/10" in line for line in messages), messages
  assert fs.exists(fs.join(workdir, "generators", "dcgan", "stacked_1-2-3-4-5-6-7-8-9", "checkpoints"))
  assert fs.read_bytes(fs.join(folder(1), "final_metrics.json")) == kept_record  # a finished member is kept
  for c, old in before.items():
    new = fs.read_json(fs.join(folder(c), "done.json"))
    assert new["step"] == old["step"] == 10
    for key in ("d_loss", "g_loss"):
      assert new[key] == pytest.approx(old[key], rel=1e-3, abs=1e-4), (c, key)


def test_stacked_seeds_reproduce_the_sequential_classifiers(smoke, idx_dir, caplog):
  # Last in the module: it rewrites two methods' classifier stages. Their seeds retrain as one vmapped
  # program per method and score as the sequential run did, up to float rounding of the predictions.
  config, workdir, results = smoke
  redone = ("none", "logit_adjustment")
  before = {(m, k): fs.read_json(fs.join(workdir, "classifiers", m, f"seed{k}.json")) for m in redone for k in (0, 1)}
  for m, k in before:
    fs.remove(fs.join(workdir, "classifiers", m, f"seed{k}.json"))
  with caplog.at_level("INFO"):
    pipeline.run_benchmark(config, workdir, idx_dir=str(idx_dir), classifier_seeds="stacked")
  messages = [r.getMessage() for r in caplog.records]
  for m in redone:
    assert any(f"[{m} seeds 0-1] step 30/30" in line for line in messages), m
  for (m, k), old in before.items():
    new = fs.read_json(fs.join(workdir, "classifiers", m, f"seed{k}.json"))
    assert new["seed"] == old["seed"] and new["train_examples"] == old["train_examples"]
    for test_set in ("balanced", "imbalanced"):
      assert abs(new[test_set]["balanced_accuracy"] - old[test_set]["balanced_accuracy"]) <= 0.5, (m, k, test_set)


def test_classifier_seeds_mode_is_checked():
  assert pipeline.stack_seeds("auto", "cpu") is False and pipeline.stack_seeds("auto", "gpu") is True
  assert pipeline.stack_seeds("stacked", "cpu") is True and pipeline.stack_seeds("sequential", "tpu") is False
  with pytest.raises(ValueError, match="Unknown classifier_seeds 'both'; choose one of: auto, stacked, sequential"):
    pipeline.stack_seeds("both", "cpu")
  with pytest.raises(ValueError, match="Unknown class_generators 'all'"):
    pipeline.stack_seeds("all", "gpu", "class_generators")


def test_the_sample_entrypoints_filter_is_the_runs_threshold_classifier_and_rounds(smoke, tmp_path):
  from gan_jax import sampling  # pylint: disable=g-import-not-at-top
  config, workdir, _ = smoke
  generator = sampling.load(fs.join(workdir, "generators", "cgan"))
  confidence, threshold, rounds = sampling.benchmark_filter(workdir, generator)
  assert (threshold, rounds) == (config.filter_confidence, config.filter_rounds) == (0.1, 2)
  calls = []

  def rejecting(images, c):  # the run's classifier, then nothing accepted: every round is drawn
    probabilities = confidence(images, c)
    assert probabilities.shape == (len(images),) and np.all((probabilities >= 0) & (probabilities <= 1))
    calls.append(c)
    return np.zeros(len(images))

  summary = sampling.export(generator, str(tmp_path / "kept.npz"), num_per_class=4, classes=(8,), fmt="npz",
                            confidence=rejecting, threshold=threshold, max_rounds=rounds)
  assert calls == [8] * rounds and summary["acceptance_rate"] == [0.0]
  assert len(np.load(tmp_path / "kept.npz")["image"]) == 4  # filled with the best-scoring rejects
