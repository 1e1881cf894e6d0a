"""One-class anomaly detection: AUROC, the one-class split, result tables and figures (NumPy only).

Convention everywhere: a higher score means "more anomalous", and anomalies are
the positive class (label 1) of the ROC curve.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from gan_jax import images as images_lib


def rankdata_average(values: np.ndarray) -> np.ndarray:
  """1-based ranks of `values`, ties sharing the mean of the ranks they span (scipy's 'average').

  Args:
    values: 1-D array.

  Returns:
    float64 ranks, same length.
  """
  values = np.asarray(values)
  order = np.argsort(values, kind="mergesort")
  ordered = values[order]
  # Runs of equal values [start, end) in sorted order share rank (start + 1 + end) / 2.
  starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
  ends = np.concatenate([starts[1:], [len(values)]])
  ranks = np.empty(len(values), np.float64)
  ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
  return ranks


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve via the Mann-Whitney U statistic.

  AUROC = P(score of a random positive > score of a random negative)
        + 0.5 P(tie), which equals U / (n_pos * n_neg) with U computed from
  average ranks; it matches the trapezoidal area of the ROC curve
  (sklearn.metrics.roc_auc_score), ties included.

  Args:
    labels: [N] binary labels, 1 = positive (anomalous).
    scores: [N] scores, higher = more positive.

  Returns:
    AUROC in [0, 1].

  Raises:
    ValueError: shapes differ, labels are not binary, a class is absent, or a score is NaN.
  """
  labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
  if labels.shape != scores.shape:
    raise ValueError(f"{labels.size} labels but {scores.size} scores")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN")
  positive = labels == 1
  n_pos, n_neg = int(positive.sum()), int((~positive).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError(f"AUROC needs both classes, got {n_pos} positives and {n_neg} negatives")
  u = rankdata_average(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def one_class_labels(class_labels: np.ndarray, normal_class: int) -> np.ndarray:
  """The one-class protocol's targets: 0 for `normal_class`, 1 (anomalous) for every other class."""
  return (np.asarray(class_labels) != normal_class).astype(np.int32)


def evaluation_subset(num_examples: int, limit: int, seed: int) -> np.ndarray:
  """Sorted indices of a seeded random subset of `limit` test examples (all when limit <= 0)."""
  if limit <= 0 or limit >= num_examples:
    return np.arange(num_examples)
  return np.sort(np.random.default_rng([seed, 0x7E57]).permutation(num_examples)[:limit])


def summarize(aurocs: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
  """Mean AUROC per scorer over the classes it has results for."""
  return {scorer: float(np.mean(list(per_class.values()))) for scorer, per_class in aurocs.items() if per_class}


def markdown_table(aurocs: Mapping[str, Mapping[int, float]], scorers: Sequence[str],
                   class_names: Sequence[str]) -> str:
  """`| class | AE | VAE | AAE |` rows of per-class AUROC and a mean row; '-' where a stage is missing."""
  classes = sorted({c for per_class in aurocs.values() for c in per_class})
  header = "| class | " + " | ".join(s.upper() for s in scorers) + " |"
  lines = [header, "|" + "---|" * (len(scorers) + 1)]
  for c in classes:
    cells = [f"{aurocs[s][c]:.4f}" if c in aurocs.get(s, {}) else "-" for s in scorers]
    lines.append(f"| {c} ({class_names[c]}) | " + " | ".join(cells) + " |")
  means = summarize(aurocs)
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
    ax.set_title(f"{name.upper()} (AUROC {auroc(targets, values):.3f})")
    ax.set_xlabel("anomaly score")
    ax.legend()
  fig.suptitle(title)
  images_lib.save_figure(fig, path)


def extremes_grid(path: str, scores: Mapping[str, np.ndarray], images: np.ndarray, count: int) -> None:
  """Two rows per scorer (in `scores` order): its `count` most, then `count` least anomalous test images."""
  rows = []
  for values in scores.values():
    order = np.argsort(values, kind="stable")
    rows += [images[order[::-1][:count]], images[order[:count]]]
  images_lib.save_grid(path, np.concatenate(rows), len(rows), count)
