"""Applying a jitted function to any number of rows in fixed-size chunks.

Every chunk has the same shape, so the function compiles once whatever the
row count: the last chunk is padded by wrapping around to the first rows, and
the padding is sliced off the outputs.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np


def padded_chunks(num_rows: int, chunk: int) -> Iterator[tuple[int, np.ndarray, int]]:
  """(chunk index, row indices [chunk] wrapping around, rows to keep) for each chunk of range(num_rows)."""
  if chunk <= 0:
    raise ValueError(f"chunk must be positive, got {chunk}")
  for index, start in enumerate(range(0, num_rows, chunk)):
    yield index, np.arange(start, start + chunk) % num_rows, min(chunk, num_rows - start)


def map_chunks(fn: Callable[[int, np.ndarray], Any], num_rows: int, chunk: int) -> Any:
  """Concatenates `fn(index, rows)` over the chunks, padding dropped.

  Args:
    fn: (chunk index, row indices [chunk]) -> a pytree of arrays whose leading
      axis has `chunk` rows (device or host arrays).
    num_rows: total rows (> 0).
    chunk: rows per call.

  Returns:
    The pytree of host arrays with `num_rows` rows each.
  """
  if num_rows <= 0:
    raise ValueError(f"map_chunks needs at least one row, got {num_rows}")
  parts = []
  for index, rows, keep in padded_chunks(num_rows, chunk):
    parts.append(jax.tree.map(lambda x, keep=keep: np.asarray(x)[:keep], jax.device_get(fn(index, rows))))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
