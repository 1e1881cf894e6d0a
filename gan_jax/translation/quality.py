"""Test errors of a translation against the true images: L1 and SSIM, per image.

SSIM (Wang et al., 2004) is computed as scikit-image's `structural_similarity`
computes it by default (7x7 uniform window, sample covariance, K1 = 0.01,
K2 = 0.03, the mean over the pixels whose window lies inside the image, averaged
over channels), in NumPy so that the core needs no scikit-image.
"""
from __future__ import annotations

import numpy as np

SSIM_WINDOW = 7


def _unit(images: np.ndarray) -> np.ndarray:
  return np.asarray(images, np.float64) / 255.0


def l1_errors(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Mean absolute error of each uint8 image pair on the [0, 1] scale: [N]."""
  diff = np.abs(_unit(predicted) - _unit(target))
  return diff.reshape(len(diff), -1).mean(axis=1)


def _window_means(x: np.ndarray, size: int) -> np.ndarray:
  """Means of every size x size window lying inside [N, H, W, C] images: [N, H-size+1, W-size+1, C]."""
  summed = np.cumsum(np.cumsum(np.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0))), axis=1), axis=2)
  box = summed[:, size:, size:] - summed[:, :-size, size:] - summed[:, size:, :-size] + summed[:, :-size, :-size]
  return box / (size * size)


def ssim(predicted: np.ndarray, target: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
  """Structural similarity of each uint8 image pair [N, H, W, C] (data range 1): [N]."""
  x, y = _unit(predicted), _unit(target)
  if min(x.shape[1:3]) < window:
    raise ValueError(f"SSIM needs images of at least {window}x{window} px, got {x.shape[1]}x{x.shape[2]}")
  mean = lambda v: _window_means(v, window)
  ux, uy = mean(x), mean(y)
  sample = window * window / (window * window - 1.0)
  vx, vy, vxy = sample * (mean(x * x) - ux * ux), sample * (mean(y * y) - uy * uy), sample * (mean(x * y) - ux * uy)
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
  return s.reshape(len(s), -1, s.shape[-1]).mean(axis=1).mean(axis=-1)


def summary(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
  """{'l1': mean L1, 'ssim': mean SSIM} over the test set."""
  return {"l1": float(l1_errors(predicted, target).mean()), "ssim": float(ssim(predicted, target).mean())}
