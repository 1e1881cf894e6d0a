"""The imbalance benchmark's report: results.json, results.csv, results.md and the figures.

`collect` builds results.json's content from the stage files of a finished run
(so a report can be rebuilt from its workdir at any time); `write` turns it into
the files. Every results.md starts with the command (and git commit) that made it.
"""
from __future__ import annotations

import csv
import io
import math
import os
import platform
import sys
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from gan_jax import evaluation
from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.protocols.imbalance import layout as layout_lib
from gan_jax.protocols.imbalance import methods as methods_lib
from gan_jax.protocols.imbalance import quality

SAMPLES_PER_ROW = quality.SAMPLES_PER_ROW
TEST_SETS = ("balanced", "imbalanced")
AS_IS_TEST_SET = "as_is"
TEST_SET_TITLES = {"balanced": "balanced test set (the full test split)",
                   "imbalanced": "imbalanced test subset (DeepSMOTE's test counts)",
                   AS_IS_TEST_SET: ("test split as it is (profile as_is: the source's own class counts, "
                                    "so no imbalanced test subset is built)")}


def test_sets_of(results: dict) -> list[str]:
  """The test sets a run scored, in report order."""
  return [t for t in TEST_SET_TITLES if t in results["test_counts"]]
METRIC_TITLES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1",
                 "g_mean": "G-mean"}


def versions() -> dict[str, str]:
  """Library versions and the machine the numbers come from."""
  import flax  # pylint: disable=g-import-not-at-top
  import imblearn  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import sklearn  # pylint: disable=g-import-not-at-top
  devices = parallel.mesh_devices()  # what the run's mesh spans
  device = devices[0]
  return {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__,
          "imbalanced-learn": imblearn.__version__, "platform": platform.platform(),
          "processor": platform.processor() or platform.machine(), "cpu_count": str(os.cpu_count()),
          "device": f"{len(devices)} x {device.platform} {getattr(device, 'device_kind', '')}".strip()}


def summarize_method(runs: Sequence[dict], baseline_runs: Sequence[dict] | None, test_sets: Sequence[str]) -> dict:
  """Mean/std over seeds of every metric, per test set, and paired differences against the baseline."""
  out = {}
  for test_set in test_sets:
    per_seed = [run[test_set] for run in runs]
    summary = {metric: {**evaluation.mean_std([r[metric] for r in per_seed]),
                        "values": [r[metric] for r in per_seed]} for metric in evaluation.METRICS}
    recalls = np.asarray([r["per_class_recall"] for r in per_seed])
    summary["per_class_recall"] = {"mean": recalls.mean(0).tolist(),
                                   "std": (recalls.std(0, ddof=1) if len(recalls) > 1 else 0 * recalls[0]).tolist()}
    summary["confusion_mean"] = np.mean([r["confusion"] for r in per_seed], axis=0).tolist()
    if "ece" in per_seed[0]:
      summary["ece"] = {**evaluation.mean_std([r["ece"] for r in per_seed]), "values": [r["ece"] for r in per_seed]}
      summary["shot_groups"] = per_seed[0]["shot_groups"]
      summary["shot_accuracy"] = {
          g: (None if per_seed[0]["shot_accuracy"][g] is None else
              evaluation.mean_std([r["shot_accuracy"][g] for r in per_seed])) for g in evaluation.SHOT_GROUPS}
    if baseline_runs is not None:
      summary["paired_vs_none"] = {
          metric: evaluation.paired_difference([r[metric] for r in per_seed],
                                               [b[test_set][metric] for b in baseline_runs])
          for metric in evaluation.METRICS}
    out[test_set] = summary
  return out


def best_of(method_entries: dict, groups: dict[str, str], wanted, test_set: str,
            metric: str = "balanced_accuracy") -> str | None:
  """The method of `wanted` groups (or names) with the highest mean `metric`, or None."""
  present = [m for m in method_entries if groups.get(m) in wanted or m in wanted]
  return max(present, key=lambda m: method_entries[m][test_set][metric]["mean"]) if present else None


def comparison(method_entries: dict, test_set: str, winner: str | None, reference: str | None,
               metric: str = "balanced_accuracy") -> dict | None:
  """Paired (winner - reference) over seeds: a win only when the whole 95% interval is above zero."""
  if winner is None or reference is None:
    return None
  paired = evaluation.paired_difference(method_entries[winner][test_set][metric]["values"],
                                        method_entries[reference][test_set][metric]["values"])
  return {"metric": metric, "method": winner, "reference": reference, "paired": paired,
          "wins": bool(paired["ci_low"] > 0)}


def verdict(method_entries: dict, groups: dict[str, str], test_set: str,
            metric: str = "balanced_accuracy") -> dict | None:
  """The benchmark's questions for one test set, each a paired comparison of the best of two groups.

  'generative': best generative method (generated images, cross-entropy) against the best
  classic remedy (class weights, resampling); 'loss_vs_classic': best long-tail loss against
  the best of class_weight and random_oversample; 'combination_vs_loss': best generator plus
  loss against the best loss alone.

  Returns:
    {'metric', 'best_classic', 'best_generative', 'paired', 'generative_wins', 'loss_vs_classic',
     'combination_vs_loss'} (a comparison is None when the run lacks one of its groups), or None
    when the run has none of them.
  """
  classic, generative = best_of(method_entries, groups, ("classic",), test_set, metric), \
      best_of(method_entries, groups, ("generative",), test_set, metric)
  loss = best_of(method_entries, groups, ("loss",), test_set, metric)
  classic_two = best_of(method_entries, groups, ("class_weight", "random_oversample"), test_set, metric)
  combined = best_of(method_entries, groups, ("combined",), test_set, metric)
  answer = {"metric": metric, "loss_vs_classic": comparison(method_entries, test_set, loss, classic_two, metric),
            "combination_vs_loss": comparison(method_entries, test_set, combined, loss, metric)}
  generative_answer = comparison(method_entries, test_set, generative, classic, metric)
  if generative_answer is not None:
    answer.update(best_classic=classic, best_generative=generative, paired=generative_answer["paired"],
                  generative_wins=generative_answer["wins"])
  if generative_answer is None and answer["loss_vs_classic"] is None and answer["combination_vs_loss"] is None:
    return None
  return answer


def collect(config: ml_collections.ConfigDict, methods: Sequence[methods_lib.Method], counts: np.ndarray,
            test_labels: dict[str, np.ndarray], layout: layout_lib.Layout, provenance: dict | None = None
            ) -> dict[str, Any]:
  """results.json's content, built from the stage files of a finished run."""
  runs = {m.name: [fs.read_json(layout.classifier(m.name, k)) for k in range(config.num_seeds)] for m in methods}
  baseline = runs.get("none")
  num_classes = len(counts)
  results = {
      "config": workdir_lib.config_to_dict(config), "versions": versions(), "provenance": provenance or {},
      "dataset": config.dataset, "profile": config.profile, "num_seeds": config.num_seeds,
      "train_counts": counts.tolist(),
      "test_counts": {t: np.bincount(labels, minlength=num_classes).tolist() for t, labels in test_labels.items()},
      "methods": {}, "quality": {"real_train": fs.read_json(layout.quality("real"))},
  }
  for m in methods:
    entry = summarize_method(runs[m.name], baseline if m.name != "none" else None, list(test_labels))
    if any("tau" in r for r in runs[m.name]):
      entry["posthoc_tau"] = [r["tau"] for r in runs[m.name]]
    entry["train_examples"] = runs[m.name][0]["train_examples"]
    entry["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in runs[m.name]]))
    if m.adds_images:
      entry["synthetic"] = fs.read_json(layout.synthetic_info(m.data.name))
    results["methods"][m.name] = entry
  for name in dict.fromkeys(m.generator for m in methods if m.generator):
    results["quality"][name] = fs.read_json(layout.quality(name))
  groups = {m.name: m.group for m in methods}
  for t in test_labels:  # every method against the best loss-only remedy, paired by seed
    best_loss = best_of(results["methods"], groups, ("loss",), t)
    for m, entry in results["methods"].items():
      if best_loss is not None and m != best_loss:
        entry[t]["paired_vs_best_loss"] = {
            "reference": best_loss,
            **{metric: evaluation.paired_difference(entry[t][metric]["values"],
                                                    results["methods"][best_loss][t][metric]["values"])
               for metric in evaluation.METRICS}}
  results["groups"] = groups
  results["verdict"] = {t: verdict(results["methods"], groups, t) for t in test_labels}
  return results


def write(layout: layout_lib.Layout, results: dict, methods: Sequence[methods_lib.Method]) -> None:
  """results.json, results.csv, results.md and the figures, each written atomically."""
  fs.write_json(layout.results_json, results)
  fs.write_text(layout.results_csv, csv_text(results))
  fs.write_text(layout.results_md, markdown(results))
  write_figures(layout, results, methods)


def csv_text(results: dict) -> str:
  """One row per (method, test set, metric): mean, std, n and the paired difference to `none`."""
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(["method", "test_set", "metric", "mean", "std", "n", "diff_vs_none", "ci95_low", "ci95_high"])
  for method, entry in results["methods"].items():
    for test_set in test_sets_of(results):
      for metric in evaluation.METRICS:
        s = entry[test_set][metric]
        p = entry[test_set].get("paired_vs_none", {}).get(metric)
        writer.writerow([method, test_set, metric, f"{s['mean']:.4f}", f"{s['std']:.4f}", s["n"]] +
                        ([f"{p['mean_diff']:.4f}", f"{p['ci_low']:.4f}", f"{p['ci_high']:.4f}"] if p else
                         ["", "", ""]))
  return buffer.getvalue()


def _pm(s: dict) -> str:
  return f"{s['mean']:.2f} ± {s['std']:.2f}"


def interval(paired: dict) -> str:
  """'[low, high]' of a paired difference; one seed has no interval."""
  if math.isnan(paired["ci_low"]):
    return f"[no interval: n = {paired['n']}]"
  return f"[{paired['ci_low']:+.2f}, {paired['ci_high']:+.2f}]"


def provenance_lines(provenance: dict) -> list[str]:
  """The command (and git commit) that produced a result file, as its first lines."""
  if not provenance.get("command"):
    return []
  lines = ["Produced by:", "", "```bash", provenance["command"], "```", ""]
  if provenance.get("git_commit"):
    lines[1:1] = [f"git commit {provenance['git_commit']}"]
  return lines


def markdown(results: dict) -> str:
  """results.md: the command, one metrics table per test set, the paired differences and the generator quality."""
  n = results["num_seeds"]
  lines = [f"# Imbalance benchmark: {results['dataset']}, profile {results['profile']}", ""]
  lines += provenance_lines(results.get("provenance", {}))
  lines += [f"Train images per class: {results['train_counts']}. Mean ± std over n = {n} classifier seeds, in %.", ""]
  for test_set in test_sets_of(results):
    title = TEST_SET_TITLES[test_set]
    lines += [f"## {title}: {results['test_counts'][test_set]} images per class", "",
              "| method | " + " | ".join(METRIC_TITLES.values()) + " |",
              "|---|" + "---|" * len(METRIC_TITLES)]
    for method, entry in results["methods"].items():
      lines.append(f"| {method} | " + " | ".join(_pm(entry[test_set][m]) for m in METRIC_TITLES) + " |")
    lines.append("")
    paired = [(m, e[test_set]["paired_vs_none"]["balanced_accuracy"]) for m, e in results["methods"].items()
              if "paired_vs_none" in e[test_set]]
    if paired:
      lines += ["Balanced accuracy minus `none`, paired by seed (95% t-interval):", "",
                "| method | difference | 95% CI |", "|---|---|---|"]
      lines += [f"| {m} | {p['mean_diff']:+.2f} | {interval(p)} |" for m, p in paired]
      lines.append("")
    lines += long_tail_table(results, test_set)
    answer = results.get("verdict", {}).get(test_set) or {}
    if "best_generative" in answer:
      p = answer["paired"]
      lines += [f"**Best generative method (`{answer['best_generative']}`) minus best classic remedy "
                f"(`{answer['best_classic']}`), balanced accuracy, paired: {p['mean_diff']:+.2f} "
                f"{interval(p)}: "
                f"{'the generative method wins' if answer['generative_wins'] else 'the generative method does not win'}"
                f" (it wins only if the whole interval is above zero).**", ""]
    for key, question in (("loss_vs_classic", "Does a long-tail loss beat class weights and oversampling?"),
                          ("combination_vs_loss", "Do generated images add anything on top of the best loss?")):
      c = answer.get(key)
      if c:
        p = c["paired"]
        lines += [f"**{question} `{c['method']}` minus `{c['reference']}`, balanced accuracy, paired: "
                  f"{p['mean_diff']:+.2f} {interval(p)}: "
                  f"{'yes' if c['wins'] else 'no'} (yes only if the whole interval is above zero).**", ""]
  quality_records = results["quality"]
  if len(quality_records) > 1:
    lines += ["## Generated images", "",
              "Frechet distance in the 128-d hidden features of an evaluator CNN trained on the full balanced "
              "train split (not Inception FID; lower is better; `real_train` is real train vs real test images, the "
              f"floor at {quality_records['real_train']['samples_per_class']} samples per class). Evaluator "
              "accuracy: share of samples the evaluator assigns to their intended class. CAS: balanced accuracy on "
              "the real test set of a classifier trained on generated images only.", "",
              "| source | mean FD | FD per class | evaluator acc. (%) | CAS (%) |", "|---|---|---|---|---|"]
    for name, q in quality_records.items():
      fd = [f for f in q["frechet_distance"] if f is not None]
      per_class = " / ".join("-" if f is None else f"{f:.1f}" for f in q["frechet_distance"])
      acc = [a for a in q.get("evaluator_accuracy", []) if a is not None]
      cas = q.get("cas")
      acc_text = f"{np.mean(acc):.1f}" if acc else "-"
      cas_text = f"{cas['balanced_accuracy']:.2f}" if cas else "-"
      lines.append(f"| {name} | {np.mean(fd):.2f} | {per_class} | {acc_text} | {cas_text} |")
    lines.append("")
    scored = {n: q["inception"] for n, q in quality_records.items() if q.get("inception")}
    if scored:
      lines += ["Inception-v3 features (pytorch-fid's FID network), every generated class against its real test "
                "images: FID, KID x 1000 (mean ± std over subsets), precision and recall (k = 3).", "",
                "| source | FID | KID x 1000 | precision | recall |", "|---|---|---|---|---|"]
      lines += [f"| {n} | {q['fid']:.2f} | {1000 * q['kid']:.2f} ± {1000 * q['kid_std']:.2f} | "
                f"{q['precision']:.3f} | {q['recall']:.3f} |" for n, q in scored.items()]
      lines.append("")
  return "\n".join(lines)


def long_tail_table(results: dict, test_set: str) -> list[str]:
  """Accuracy per shot group, calibration error and the paired difference to the best loss, per method."""
  rows = [(m, e[test_set]) for m, e in results["methods"].items() if "ece" in e[test_set]]
  if not rows:
    return []
  groups = rows[0][1]["shot_groups"]
  named = {g: [str(c) for c, x in enumerate(groups) if x == g] for g in evaluation.SHOT_GROUPS}
  cell = lambda s: "-" if s is None else _pm(s)
  lines = ["Accuracy per shot group (training images per class: many > 100, medium 20-100, few < 20; classes "
           + "; ".join(f"{g}: {', '.join(c) or 'none'}" for g, c in named.items())
           + "), expected calibration error (15 bins), and balanced accuracy minus the best loss-only remedy:", "",
           "| method | many | medium | few | ECE | bal. acc. − best loss, paired 95% CI |", "|---|---|---|---|---|---|"]
  for m, s in rows:
    p = s.get("paired_vs_best_loss")
    diff = (f"{p['balanced_accuracy']['mean_diff']:+.2f} {interval(p['balanced_accuracy'])} vs `{p['reference']}`"
            if p else "")
    lines.append(f"| {m} | {cell(s['shot_accuracy']['many'])} | {cell(s['shot_accuracy']['medium'])} | "
                 f"{cell(s['shot_accuracy']['few'])} | {_pm(s['ece'])} | {diff} |")
  return lines + [""]


def write_figures(layout: layout_lib.Layout, results: dict, methods: Sequence[methods_lib.Method]) -> None:
  """confusion_<method>.png, per_class_recall.png and samples_<method>.png."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = [m.name for m in methods]
  first = test_sets_of(results)[0]  # the balanced test set, or the only one of an as-is source
  shown = "balanced test" if first == "balanced" else "test split"
  for m in names:
    confusion = np.asarray(results["methods"][m][first]["confusion_mean"])
    normalised = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(normalised):
      if v >= 0.005:
        ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                color="white" if v > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"{m}: recall % ({shown}, mean of seeds)",
           xticks=range(len(confusion)), yticks=range(len(confusion)))
    fig.colorbar(image, ax=ax)
    fs.save_figure(fig, layout.figure(f"confusion_{m}.png"), dpi=120)

  fig, ax = plt.subplots(figsize=(max(8, len(names) * 1.6), 4))
  classes = np.arange(len(results["train_counts"]))
  width = 0.8 / len(names)
  for i, m in enumerate(names):
    recall = results["methods"][m][first]["per_class_recall"]
    ax.bar(classes + i * width - 0.4 + width / 2, recall["mean"], width, yerr=recall["std"], label=m)
  ax.set(xlabel="class (train images)", ylabel=f"recall % ({shown})", xticks=classes,
         xticklabels=[f"{c}\n({n})" for c, n in zip(classes, results["train_counts"])])
  ax.set_ylim(max(0, min(min(results["methods"][m][first]["per_class_recall"]["mean"]) for m in names) - 5), 100)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the bars fill the axes
  ax.grid(axis="y", alpha=0.3)
  fs.save_figure(fig, layout.figure("per_class_recall.png"), dpi=120)

  for data in dict.fromkeys(m.data for m in methods if m.adds_images):
    samples = layout.quality_samples(data.name) if data.kind == "generator" else layout.synthetic(data.name)
    if fs.exists(samples):
      arrays = fs.load_npz(samples)
      write_samples(layout.figure(f"samples_{data.name}.png"), arrays["image"], arrays["label"])


def write_samples(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  """One row per class present: up to SAMPLES_PER_ROW images, blank cells where a class has fewer."""
  rows = []
  for c in np.unique(labels):
    picked = images[labels == c][:SAMPLES_PER_ROW]
    pad = np.full((SAMPLES_PER_ROW - len(picked),) + images.shape[1:], 255, np.uint8)
    rows.append(np.concatenate([picked, pad]))
  if rows:
    grid = np.concatenate(rows).astype(np.float32) / 255.0
    images_lib.save_grid(path, grid, len(rows), SAMPLES_PER_ROW)
