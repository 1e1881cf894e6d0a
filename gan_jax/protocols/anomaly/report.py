"""The anomaly protocol's report: results.json, results.md, the score histograms and the extreme images."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax.protocols.anomaly import scoring


def markdown_table(aurocs: Mapping[str, Mapping[int, float]], scorers: Sequence[str],
                   class_names: Sequence[str]) -> str:
  """`| class | AE | VAE | AAE |` rows of per-class AUROC and a mean row; '-' where a stage is missing."""
  classes = sorted({c for per_class in aurocs.values() for c in per_class})
  header = "| class | " + " | ".join(s.upper() for s in scorers) + " |"
  lines = [header, "|" + "---|" * (len(scorers) + 1)]
  for c in classes:
    cells = [f"{aurocs[s][c]:.4f}" if c in aurocs.get(s, {}) else "-" for s in scorers]
    lines.append(f"| {c} ({class_names[c]}) | " + " | ".join(cells) + " |")
  means = scoring.summarize(aurocs)
  lines.append("| **mean** | " + " | ".join(f"**{means[s]:.4f}**" if s in means else "-" for s in scorers) + " |")
  return "\n".join(lines) + "\n"


def score_histogram(path: str, scores: Mapping[str, np.ndarray], targets: np.ndarray, title: str) -> None:
  """One panel per scorer: density histograms of normal vs anomalous scores on shared bins."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(scores), figsize=(4.5 * len(scores), 3.6), squeeze=False)
  for ax, (name, values) in zip(axes[0], scores.items()):
    # Clip the far tail so a few huge anomaly scores do not squash the normal mode.
    hi = np.percentile(values, 99.5)
    bins = np.linspace(values.min(), max(hi, values.min() + 1e-6), 50)
    for target, label, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
      ax.hist(np.minimum(values[targets == target], hi), bins=bins, density=True, alpha=0.55, label=label,
              color=colour)
    ax.set_title(f"{name.upper()} (AUROC {scoring.auroc(targets, values):.3f})")
    ax.set_xlabel("anomaly score")
    ax.legend()
  fig.suptitle(title)
  fs.save_figure(fig, path)


def extremes_grid(path: str, scores: Mapping[str, np.ndarray], images: np.ndarray, count: int) -> None:
  """Two rows per scorer (in `scores` order): its `count` most, then `count` least anomalous test images."""
  rows = []
  for values in scores.values():
    order = np.argsort(values, kind="stable")
    rows += [images[order[::-1][:count]], images[order[:count]]]
  images_lib.save_grid(path, np.concatenate(rows), len(rows), count)


def markdown(dataset: str, results: dict, scorers: Sequence[str], class_names: Sequence[str], num_test: int,
             num_steps: int, figure_class: int, provenance: Mapping[str, str] | None = None) -> str:
  """results.md: the command, the AUROC table and what the figures show."""
  aurocs = {s: {int(c): v for c, v in per_class.items()} for s, per_class in results["auroc"].items()}
  rows = ", ".join(f"{s.upper()} most / least anomalous" for s in scorers)
  lines = [f"# One-class anomaly detection on {dataset}", ""]
  if provenance and provenance.get("command"):
    commit = [f"git commit {provenance['git_commit']}"] if provenance.get("git_commit") else []
    lines += ["Produced by:"] + commit + ["", "```bash", provenance["command"], "```", ""]
  lines += [f"Test AUROC per normal class (train on that class only; every other test class is anomalous). "
            f"{num_test} test images, {num_steps} training steps per stage.", "",
            markdown_table(aurocs, scorers, class_names),
            f"Best scorer: **{results['best_scorer'].upper()}** "
            f"(mean AUROC {results['mean_auroc'][results['best_scorer']]:.4f}).", "",
            f"`score_histogram.png`, `extremes.png`: normal class {figure_class}; extremes rows: {rows}.", ""]
  return "\n".join(lines)
