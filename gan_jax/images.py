"""Image grids and training curves written to PNG files (through `gan_jax.fs`, so URLs work too)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gan_jax import fs


def to_uint8(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
  """Maps images from `value_range` to uint8 [0, 255], clipping outliers."""
  lo, hi = value_range
  scaled = (np.asarray(images, np.float32) - lo) / (hi - lo)
  return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def sample_grid(conditional: bool, num_classes: int, per_class: int = 10, side: int = 8
                ) -> tuple[int, int, np.ndarray]:
  """(rows, cols, int32 labels) of a sample grid: one row per class, or a side x side square."""
  if conditional:
    return num_classes, per_class, np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
  return side, side, np.zeros((side * side,), np.int32)


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 2) -> np.ndarray:
  """Tiles [rows * cols, H, W, C] uint8 images into one [rows*(H+pad)+pad, ...] image."""
  n, h, w, c = images.shape
  if n != rows * cols:
    raise ValueError(f"Cannot tile {n} images into {rows}x{cols}")
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, rows: int, cols: int,
              value_range: tuple[float, float] = (0.0, 1.0)) -> None:
  """Writes a grid PNG atomically (temporary file, then rename)."""
  grid = make_grid(to_uint8(images, value_range), rows, cols)
  fs.save_png(path, grid[..., 0] if grid.shape[-1] == 1 else grid)


def plot_curves(path: str, records: Sequence[dict], keys: Sequence[str], title: str = "") -> None:
  """Line plot of `keys` against `step` from metrics records (missing keys skipped)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4))
  for key in keys:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    if points:
      steps, values = zip(*points)
      ax.plot(steps, values, label=key)
  ax.set_xlabel("step")
  ax.set_title(title)
  ax.legend()
  ax.grid(alpha=0.3)
  fs.save_figure(fig, path)

