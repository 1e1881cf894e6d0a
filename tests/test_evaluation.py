"""Classification metrics, paired confidence intervals and the Frechet distance against hand-computed values."""
import math

import numpy as np
import pytest

from gan_jax import evaluation


def test_classification_metrics_hand_computed():
  # Class 0: 4 images, 3 right; class 1: 2 images, 1 right; class 2: 2 images, both right.
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  preds = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  m = evaluation.classification_metrics(labels, preds, num_classes=3)
  recalls = [3 / 4, 1 / 2, 1.0]
  precisions = [1.0, 1 / 2, 2 / 3]
  f1 = [2 * p * r / (p + r) for p, r in zip(precisions, recalls)]
  assert m["accuracy"] == pytest.approx(100 * 6 / 8)
  assert m["balanced_accuracy"] == pytest.approx(100 * np.mean(recalls))
  assert m["macro_f1"] == pytest.approx(100 * np.mean(f1))
  np.testing.assert_allclose(m["per_class_recall"], [100 * r for r in recalls])
  assert m["confusion"] == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
  # imbalanced-learn's average='macro' G-mean: sqrt(macro sensitivity * macro specificity).
  specificity = [4 / 4, 5 / 6, 5 / 6]
  expected_gmean = math.sqrt(np.mean(recalls) * np.mean(specificity))
  assert m["g_mean"] == pytest.approx(100 * expected_gmean)


def test_balanced_accuracy_ignores_classes_absent_from_the_test_set():
  m = evaluation.classification_metrics(np.array([0, 0, 1]), np.array([0, 1, 1]), num_classes=4)
  assert m["balanced_accuracy"] == pytest.approx(100 * (0.5 + 1.0) / 2)
  assert len(m["confusion"]) == 4


def test_paired_difference_t_interval():
  method, baseline = [91.0, 93.0, 92.0], [90.0, 90.5, 91.5]
  result = evaluation.paired_difference(method, baseline)
  diffs = np.array([1.0, 2.5, 0.5])
  half = 4.302652729911275 * diffs.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
  assert result["mean_diff"] == pytest.approx(diffs.mean())
  assert result["ci_low"] == pytest.approx(diffs.mean() - half)
  assert result["ci_high"] == pytest.approx(diffs.mean() + half)
  assert result["differences"] == pytest.approx(diffs.tolist())


def test_paired_difference_single_seed_and_mismatch():
  one = evaluation.paired_difference([2.0], [1.0])
  assert one["mean_diff"] == 1.0 and math.isnan(one["ci_low"])
  with pytest.raises(ValueError, match="equally many"):
    evaluation.paired_difference([1.0, 2.0], [1.0])


def test_mean_std_uses_sample_std():
  s = evaluation.mean_std([1.0, 2.0, 3.0])
  assert s == {"mean": 2.0, "std": 1.0, "n": 3}
  assert evaluation.mean_std([4.0])["std"] == 0.0


def test_frechet_distance_closed_forms():
  # Diagonal covariances: ||mu1 - mu2||^2 + sum (s1 - s2)^2 over standard deviations.
  mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, 1.0])
  s1, s2 = np.array([1.0, 2.0]), np.array([3.0, 0.5])
  fd = evaluation.frechet_distance(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2))
  assert fd == pytest.approx(9.0 + np.sum((s1 - s2) ** 2))
  cov = np.array([[2.0, 0.3], [0.3, 1.0]])
  assert evaluation.frechet_distance(mu1, cov, mu1, cov) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_samples_shrinks_with_the_shift():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(4000, 3))
  near = evaluation.features_frechet_distance(a, rng.normal(size=(4000, 3)) + 0.1)
  far = evaluation.features_frechet_distance(a, rng.normal(size=(4000, 3)) + 1.0)
  assert near == pytest.approx(3 * 0.01, abs=0.02)
  assert far == pytest.approx(3 * 1.0, abs=0.1)
  with pytest.raises(ValueError, match="N >= 2"):
    evaluation.features_frechet_distance(a[:1], a)


def test_expected_calibration_error_by_hand():
  labels = np.array([0, 0, 1, 1])
  # Two confident bins: 0.95 (both right) and 0.65 (one right of two).
  probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.65, 0.35]])
  expected = 0.5 * abs(1.0 - 0.95) + 0.5 * abs(0.5 - 0.65)
  assert evaluation.expected_calibration_error(labels, probs) == pytest.approx(100 * expected)
  perfect = np.eye(2)[labels]
  assert evaluation.expected_calibration_error(labels, perfect) == pytest.approx(0.0)


def test_shot_groups_and_their_accuracy():
  assert [evaluation.shot_group(n) for n in (101, 100, 20, 19)] == ["many", "medium", "medium", "few"]
  labels = np.array([0, 0, 1, 2, 2])
  probs = np.eye(3)[[0, 1, 1, 2, 0]]
  out = evaluation.long_tail_metrics(labels, probs, train_counts=[500, 50, 5])
  assert out["shot_groups"] == ["many", "medium", "few"]
  assert out["shot_accuracy"] == {"many": 50.0, "medium": 100.0, "few": 50.0}
  assert evaluation.long_tail_metrics(labels, probs, train_counts=[500, 500, 500])["shot_accuracy"]["few"] is None
