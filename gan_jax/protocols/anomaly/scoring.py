"""One-class anomaly scores: the protocol's targets and the AUROC (NumPy and scikit-learn).

Convention everywhere: a higher score means "more anomalous", and anomalies are
the positive class (label 1) of the ROC curve.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve, P(positive scores higher) + 0.5 P(tie) (scikit-learn's roc_auc_score).

  Args:
    labels: [N] binary labels, 1 = positive (anomalous).
    scores: [N] scores, higher = more positive.

  Raises:
    ValueError: shapes differ, labels are not binary, a class is absent, or a score is NaN.
  """
  from sklearn import metrics  # pylint: disable=g-import-not-at-top
  labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
  if labels.shape != scores.shape:
    raise ValueError(f"{labels.size} labels but {scores.size} scores")
  if not np.isin(labels, (0, 1)).all():
    raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN")
  n_pos = int(labels.sum())
  if n_pos == 0 or n_pos == len(labels):
    raise ValueError(f"AUROC needs both classes, got {n_pos} positives and {len(labels) - n_pos} negatives")
  return float(metrics.roc_auc_score(labels, scores))


def one_class_labels(class_labels: np.ndarray, normal_class: int) -> np.ndarray:
  """The one-class protocol's targets: 0 for `normal_class`, 1 (anomalous) for every other class."""
  return (np.asarray(class_labels) != normal_class).astype(np.int32)


def summarize(aurocs: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
  """Mean AUROC per scorer over the classes it has results for."""
  return {scorer: float(np.mean(list(per_class.values()))) for scorer, per_class in aurocs.items() if per_class}
