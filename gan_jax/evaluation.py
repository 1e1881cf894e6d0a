"""Classification metrics, paired confidence intervals and the Frechet distance (NumPy/SciPy).

The imbalance benchmark reports, per classifier run, the metrics of the
imbalanced-learning literature: accuracy, balanced accuracy (ACSA, the mean of
per-class recalls), macro F1 and the macro geometric mean of imbalanced-learn.
Methods are compared with `none` by paired per-seed differences, because every
method is trained with the same seeds.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "g_mean")


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
  """Scalar metrics (in %), per-class recall (in %) and the confusion matrix of one run.

  Args:
    labels: true labels [N].
    predictions: predicted labels [N].
    num_classes: number of classes (rows/columns of the confusion matrix).

  Returns:
    {'accuracy', 'balanced_accuracy', 'macro_f1', 'g_mean': float,
     (g_mean: imbalanced-learn's geometric_mean_score(average='macro'), i.e.
     sqrt(mean per-class sensitivity * mean per-class specificity)),
     'per_class_recall': list[float], 'confusion': list[list[int]]}
    (confusion[i][j]: images of class i predicted as j).
  """
  from imblearn import metrics as imb_metrics  # pylint: disable=g-import-not-at-top
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top

  labels, predictions = np.asarray(labels), np.asarray(predictions)
  classes = list(range(num_classes))
  confusion = sk_metrics.confusion_matrix(labels, predictions, labels=classes)
  support = confusion.sum(axis=1)
  recall = np.divide(np.diag(confusion), support, out=np.zeros(num_classes), where=support > 0)
  present = support > 0
  return {
      "accuracy": 100.0 * float(np.mean(labels == predictions)),
      "balanced_accuracy": 100.0 * float(np.mean(recall[present])),
      "macro_f1": 100.0 * float(sk_metrics.f1_score(labels, predictions, labels=classes, average="macro",
                                                     zero_division=0)),
      "g_mean": 100.0 * float(imb_metrics.geometric_mean_score(labels, predictions, labels=classes,
                                                                average="macro")),
      "per_class_recall": [100.0 * float(r) for r in recall],
      "confusion": confusion.astype(int).tolist(),
  }


def mean_std(values: Sequence[float]) -> dict:
  """{'mean', 'std' (sample std, ddof=1; 0 for one value), 'n'}."""
  values = np.asarray(values, np.float64)
  std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return {"mean": float(np.mean(values)), "std": std, "n": int(len(values))}


def paired_difference(method: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict:
  """Mean of per-seed differences method - baseline with a Student-t confidence interval.

  Args:
    method: one value per seed.
    baseline: the baseline's value for the same seeds, in the same order.
    confidence: two-sided coverage of the interval.

  Returns:
    {'mean_diff', 'ci_low', 'ci_high', 'n', 'differences'}; with a single seed
    the interval is undefined (NaN).

  Raises:
    ValueError: the two sequences differ in length or are empty.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top

  method, baseline = np.asarray(method, np.float64), np.asarray(baseline, np.float64)
  if len(method) != len(baseline) or not len(method):
    raise ValueError(f"paired_difference needs equally many values per seed, got {len(method)} and {len(baseline)}")
  diffs = method - baseline
  n = len(diffs)
  mean = float(np.mean(diffs))
  if n < 2:
    low = high = math.nan
  else:
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * float(np.std(diffs, ddof=1)) / math.sqrt(n)
    low, high = mean - half, mean + half
  return {"mean_diff": mean, "ci_low": low, "ci_high": high, "n": n, "differences": diffs.tolist()}


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and covariance [D, D] (ddof=1) of features [N, D]."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
  """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2}) between two Gaussians (Heusel et al., 2017).

  The matrix square root is taken of the symmetric C1^{1/2} C2 C1^{1/2}, whose
  trace of square root equals that of C1 C2 but is numerically stable.
  """
  sqrt_c1 = _psd_sqrt(cov1)
  middle = _psd_sqrt(sqrt_c1 @ cov2 @ sqrt_c1)
  value = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(middle))
  return max(value, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
  matrix = (matrix + matrix.T) / 2.0
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def features_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
  return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


# Shot groups of the long-tail literature (Liu et al., CVPR 2019; Kang et al., ICLR 2020), by the
# number of training images of a class: many > 100, medium 20-100, few < 20.
SHOT_GROUPS = ("many", "medium", "few")


def shot_group(train_count: int) -> str:
  return "many" if train_count > 100 else ("medium" if train_count >= 20 else "few")


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, num_bins: int = 15) -> float:
  """ECE (Guo et al., ICML 2017) in %: sum over equal-width confidence bins of |accuracy - confidence| x share.

  Args:
    labels: true labels [N].
    probabilities: predicted class probabilities [N, C].
    num_bins: bins over (0, 1]; 15 as in Guo et al.
  """
  labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
  confidence = probabilities.max(-1)
  correct = probabilities.argmax(-1) == labels
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  total = 0.0
  for low, high in zip(edges[:-1], edges[1:]):
    in_bin = (confidence > low) & (confidence <= high)
    if in_bin.any():
      total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
  return 100.0 * float(total)


def long_tail_metrics(labels: np.ndarray, probabilities: np.ndarray, train_counts) -> dict:
  """Accuracy per shot group (in %, None for an empty group), the group of each class, and the ECE.

  The accuracy of a group is over the test images of its classes.
  """
  labels = np.asarray(labels)
  groups = [shot_group(int(n)) for n in train_counts]
  correct = np.asarray(probabilities).argmax(-1) == labels
  accuracy = {}
  for group in SHOT_GROUPS:
    classes = [c for c, g in enumerate(groups) if g == group]
    in_group = np.isin(labels, classes)
    accuracy[group] = 100.0 * float(correct[in_group].mean()) if in_group.any() else None
  return {"shot_accuracy": accuracy, "shot_groups": groups,
          "ece": expected_calibration_error(labels, probabilities)}
