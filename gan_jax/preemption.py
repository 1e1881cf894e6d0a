"""Turns SIGTERM/SIGINT into a flag the training loop polls, so it can checkpoint and exit cleanly.

Preemptible TPU VMs and cluster schedulers send SIGTERM some seconds before
killing a job; a Python KeyboardInterrupt in the middle of a jitted step or an
async save would lose the work since the last checkpoint.
"""
from __future__ import annotations

import signal

import jax
import numpy as np

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
  """Context manager recording the first SIGTERM/SIGINT instead of dying.

  A second signal of the same kind while stopping restores the default action,
  so a user can still force-quit a hung run with a second Ctrl-C.
  """

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    previous = self._previous.get(signum)
    if isinstance(getattr(previous, "__self__", None), StopSignal):
      previous(signum, frame)  # an enclosing StopSignal (a protocol around a training run) learns of it too
    if self.received is not None:
      signal.signal(signum, self._original(signum))
      return
    self.received = signal.Signals(signum).name

  def _original(self, signum):
    """The handler before any StopSignal was entered (the one a second signal restores)."""
    previous = self._previous.get(signum, signal.SIG_DFL)
    owner = getattr(previous, "__self__", None)
    return owner._original(signum) if isinstance(owner, StopSignal) else previous

  def __enter__(self) -> "StopSignal":
    for sig in _SIGNALS:
      self._previous[sig] = signal.getsignal(sig)
      signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def should_stop(self) -> bool:
    """True on every process once any process got a signal (a collective when multi-process)."""
    local = self.received is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.array([local]))))


class NeverStop:
  """A StopSignal stand-in for work that cannot resume mid-way: it never asks to stop."""
  received = None

  def __enter__(self) -> "NeverStop":
    return self

  def __exit__(self, *exc):
    return False

  def should_stop(self) -> bool:
    return False
