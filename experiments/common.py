"""Runtime set-up shared by the experiment entrypoints (the only place that reads the environment)."""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

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
  # Orbax logs every save step at INFO through absl too; keep its warnings only.
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    from gan_jax import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def idx_dir() -> str | None:
  """The offline IDX folder from $GAN_JAX_IDX_DIR, or None to use TFDS."""
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  return sources.default_idx_dir()


def enable_compilation_cache(path: str) -> None:
  """Persists compiled XLA programs in `path` unless $JAX_COMPILATION_CACHE_DIR already chose a folder.

  Experiments that train many same-shaped models (one GAN per class) then
  compile each program once, and a rerun compiles nothing.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if path and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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


def parse_flags(argv: list[str]) -> list[str]:
  """absl flags parser (for app.run) that reports config-file and override errors in one line.

  ml_collections raises AttributeError/KeyError for an unknown --config.<field>,
  OSError (with the loader's traceback inside) for a missing or failing config file.
  """
  try:
    remaining = flags.FLAGS(argv)
    # Config files load lazily; load them now so their errors are reported here.
    for name in flags.FLAGS:
      if "ConfigFlag" in type(flags.FLAGS[name]).__name__:
        # A config that failed to load is a placeholder raising its load error on any access.
        ml_collections.ConfigDict(flags.FLAGS[name].value.to_dict())
    return remaining
  except (AttributeError, KeyError) as e:
    field = str(e).strip("'\"")
    _exit(ValueError(f"Unknown config field '{field}': check the --config.<field> overrides against the config file"),
          USAGE_EXIT_CODE)
  except (flags.Error, OSError, ValueError, TypeError) as e:
    _exit(e, USAGE_EXIT_CODE)
  return []  # unreachable: _exit leaves


def _one_line(error: BaseException) -> str:
  """The error's last informative line: wrapped loader errors end with the root cause."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if len(lines) > 1:
    return lines[-1]
  return lines[0] if lines else type(error).__name__


def _exit(error: BaseException, code: int) -> None:
  message = _one_line(error)
  logging.flush()
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def define_run_flags(config_help: str, workdir_help: str):
  """The --config, --workdir and --overwrite flags every experiment takes.

  Returns:
    (config, workdir, overwrite) flag holders.
  """
  config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
  workdir = flags.DEFINE_string("workdir", None, workdir_help)
  overwrite = flags.DEFINE_bool("overwrite", False, "Discard an earlier run with a different config in --workdir.")
  flags.mark_flags_as_required(["config", "workdir"])
  return config, workdir, overwrite


def run(experiment: Callable[[], object], failures: tuple[type[BaseException], ...] = ()) -> None:
  """app.run for an experiment: one-line flag errors, runtime set-up, then `experiment()` via run_cleanly."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    setup_runtime()
    run_cleanly(experiment, failures)

  app.run(main, flags_parser=parse_flags)
