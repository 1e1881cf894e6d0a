"""Runtime set-up shared by the experiment entrypoints (the only place that reads the environment)."""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import flags
from absl import logging

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (auto-detects TPU VMs, SLURM, ...).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for a multi-process run (implies --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")

# Errors of the user's making (bad config, missing data, conflicting workdir) exit with code 2,
# failures during the run (NaN losses) with code 1; both print one line, never a traceback.
USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1


def setup_runtime() -> None:
  """Quietens TensorFlow (imported lazily, only by TFDS pipelines), logs progress, starts multi-process JAX."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.INFO)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    from gan_jax import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def idx_dir() -> str | None:
  """The offline IDX folder from $GAN_JAX_IDX_DIR, or None to use TFDS."""
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  return sources.default_idx_dir()


def run_cleanly(fn: Callable[[], object], failures: tuple[type[BaseException], ...] = ()) -> None:
  """Runs `fn`; a bad-input error or one of `failures` exits with one line on stderr."""
  from gan_jax.data import idx as idx_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  usage_errors = (ValueError, FileNotFoundError, sources.DataUnavailableError, idx_lib.IdxFormatError)
  try:
    fn()
  except usage_errors as e:
    _exit(e, USAGE_EXIT_CODE)
  except failures as e:  # pylint: disable=catching-non-exception
    _exit(e, FAILURE_EXIT_CODE)


def _exit(error: BaseException, code: int) -> None:
  message = " ".join(str(error).split()) or type(error).__name__
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)
