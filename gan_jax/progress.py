"""Console progress lines with throughput and ETA."""
from __future__ import annotations

import datetime
import time

from absl import logging


def format_duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0.0))))


class Progress:
  """Tracks wall time between reports of a run of `total` steps that started at `start`."""

  def __init__(self, total: int, start: int = 0, name: str = "train"):
    self.total, self.name = total, name
    self._t0 = self._last_t = time.perf_counter()
    self._start = self._last_step = start

  def rate(self, step: int) -> float:
    """Steps per second since the previous call (and resets the interval)."""
    now = time.perf_counter()
    steps, seconds = step - self._last_step, now - self._last_t
    self._last_t, self._last_step = now, step
    return steps / seconds if seconds > 0 else float("nan")

  def eta(self, step: int) -> float:
    done = step - self._start
    elapsed = time.perf_counter() - self._t0
    return elapsed / done * (self.total - step) if done > 0 else float("nan")

  def report(self, step: int, message: str) -> None:
    eta = self.eta(step)
    eta_text = format_duration(eta) if eta == eta else "?"
    logging.info("[%s] step %d/%d (%.1f%%) %s | ETA %s", self.name, step, self.total,
                 100.0 * step / max(self.total, 1), message, eta_text)
