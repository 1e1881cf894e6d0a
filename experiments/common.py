"""Runtime set-up shared by the experiment entrypoints (the only place that reads the environment)."""
from __future__ import annotations

import logging as std_logging
import os
import re
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_file

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (auto-detects TPU VMs, SLURM, ...).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 for a multi-process run (implies --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Also show the INFO logs of the libraries (Orbax, JAX, TFDS); by default the console shows "
    "gan_jax's progress lines, warnings and errors.")
_XLA_CPU_YNN = flags.DEFINE_bool(
    "xla_cpu_ynn_fusions", False,
    "Let XLA:CPU run convolutions and dots through its YNN library fusions (XLA's own default). Off by "
    "default: measured 1.2-1.4x slower train steps on CPU (see README, Benchmark). No effect on GPU/TPU.")

# XLA:CPU's switch for its YNN library fusions; an empty value turns them all off.
YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib releases [low, high) where that flag exists and was measured (pyproject allows jax < 0.11).
YNN_JAXLIB_RANGE = ((0, 10), (0, 11))

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKDIR_FLAG = None
# Errors of the user's making (bad config, missing data, conflicting workdir) exit with code 2,
# failures during the run (NaN losses) with code 1; both print one line, never a traceback.
USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1


def jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's (major, minor, patch), read without starting a JAX backend."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return tuple(int(part) for part in re.findall(r"\d+", metadata.version("jaxlib"))[:3])


def xla_flags_with_cpu_defaults(xla_flags: str, ynn_fusions: bool, jaxlib: tuple[int, ...]) -> str:
  """`xla_flags` plus the project's XLA:CPU default: YNN library fusions off, unless `ynn_fusions`.

  With jaxlib 0.10, XLA:CPU hands convolutions, dots and some reductions to YNN
  fusions; on this project's models its own kernels are faster (DCGAN-MNIST
  step 350 -> 460 img/s, classifier gradient 38 -> 27 ms on 2 cores). The flag
  is experimental and XLA aborts on a flag it does not know, so it is only added
  for the jaxlib releases it was measured and tested with (YNN_JAXLIB_RANGE). A
  value the user already gave for the flag is kept as is.

  Args:
    xla_flags: the current $XLA_FLAGS (space-separated).
    ynn_fusions: keep XLA's default (YNN fusions on).
    jaxlib: the installed jaxlib version, e.g. (0, 10, 2).

  Returns:
    The flags to put in $XLA_FLAGS.
  """
  low, high = YNN_JAXLIB_RANGE
  if ynn_fusions or YNN_FUSION_FLAG in xla_flags or not low <= tuple(jaxlib) < high:
    return xla_flags
  return f"{xla_flags} {YNN_FUSION_FLAG}=".strip()


def setup_runtime() -> None:
  """Sets XLA:CPU defaults, quietens TensorFlow (imported lazily, only by TFDS pipelines), logs progress,
  starts multi-process JAX.

  Must run before the first JAX computation: XLA reads $XLA_FLAGS once, when a backend starts.
  """
  os.environ["XLA_FLAGS"] = xla_flags_with_cpu_defaults(os.environ.get("XLA_FLAGS", ""), _XLA_CPU_YNN.value,
                                                        jaxlib_version())
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  logging.set_verbosity(logging.INFO)
  if not _VERBOSE.value:
    # ABSLHandler hands records to its python_handler without applying its own filters.
    logging.get_absl_handler().python_handler.addFilter(project_logs_only)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    from gan_jax import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


_PROJECT_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
                      for package in ("gan_jax", "experiments", "benchmarks"))


def project_logs_only(record) -> bool:
  """A logging filter: warnings and errors from anywhere, INFO only from this project's own code.

  Orbax alone logs some 40 INFO lines per checkpoint through absl; they would bury the
  progress lines.
  """
  # Python's level numbers: absl.logging.WARNING is absl's own verbosity scale (-1).
  return record.levelno >= std_logging.WARNING or os.path.abspath(record.pathname).startswith(_PROJECT_DIRS)


def idx_dir() -> str | None:
  """The offline IDX folder from $GAN_JAX_IDX_DIR, or None to use TFDS."""
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  return sources.default_idx_dir()


def default_cache(workdir: str) -> str:
  """Where an experiment keeps its compiled programs: <workdir>/xla_cache, or a local folder for a URL workdir.

  The cache is not a result: on a pod each worker compiles for itself, and a local
  cache spares the bucket thousands of small objects.
  """
  from gan_jax import fs  # pylint: disable=g-import-not-at-top
  if fs.is_local(workdir):
    return fs.join(workdir, "xla_cache")
  import tempfile  # pylint: disable=g-import-not-at-top
  return os.path.join(tempfile.gettempdir(), "gan_jax_xla_cache")


def provenance() -> dict[str, str]:
  """The exact command of this run (with the data variable it read) and the git commit of the checkout."""
  import shlex  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  module = os.path.relpath(os.path.abspath(sys.argv[0]), _REPO_ROOT)[:-len(".py")].replace(os.sep, ".")
  command = shlex.join(["python", "-m", module] + sys.argv[1:])
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  if os.environ.get(sources.IDX_DIR_ENV):
    command = f"{sources.IDX_DIR_ENV}={shlex.quote(os.environ[sources.IDX_DIR_ENV])} {command}"
  record = {"command": command}
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True,
                            timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO_ROOT,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    record["git_commit"] = commit + (" (with uncommitted changes)" if dirty else "")
  except (OSError, subprocess.SubprocessError):
    pass  # not a git checkout (an installed package): the command alone
  return record


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
  """Runs `fn`; a bad-input error, a non-finite loss or one of `failures` exits with one line on stderr."""
  from gan_jax.data import idx as idx_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.data import sources  # pylint: disable=g-import-not-at-top
  from gan_jax.train import loop  # pylint: disable=g-import-not-at-top
  failures = (loop.NonFiniteError,) + tuple(failures)
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
    _exit(ValueError(unknown_field_message(str(e).strip("'\""), argv)), USAGE_EXIT_CODE)
  except (flags.Error, OSError, ValueError, TypeError) as e:
    _exit(e, USAGE_EXIT_CODE)
  return []  # unreachable: _exit leaves


def unknown_field_message(field: str, argv: list[str]) -> str:
  """The error for an override of a field the config does not have, naming its whole path.

  A field that exists at the top level but was set inside a section (say
  generators.cgan.dataset) is one the top level decides for every stage.
  """
  overrides = [a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")]
  path = next((p for p in overrides if p.split(".")[-1] == field), field)
  message = f"Unknown config field '{path}': check the --config.<field> overrides against the config file"
  if "." not in path:
    return message
  files = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  try:
    top = config_file.ConfigFileFlagParser("config").parse(files[-1]) if files else None
  except Exception:  # pylint: disable=broad-except  # the file's own error is reported elsewhere
    top = None
  if top is not None and field in top:
    return (f"Unknown config field '{path}': config.{field} is set at the top level for every stage; "
            f"use --config.{field}")
  return message


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

  The workdir (a local folder or a URL such as gs://bucket/run) is checked before
  the experiment starts: a path that cannot be written fails in seconds.

  Returns:
    (config, workdir, overwrite) flag holders.
  """
  global _WORKDIR_FLAG
  config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
  workdir = _WORKDIR_FLAG = flags.DEFINE_string("workdir", None, workdir_help)
  overwrite = flags.DEFINE_bool("overwrite", False, "Discard an earlier run with a different config in --workdir.")
  flags.mark_flags_as_required(["config", "workdir"])
  return config, workdir, overwrite


def check_paths() -> None:
  """The workdir must be writable and $GAN_JAX_IDX_DIR (when set) readable, checked in seconds."""
  from gan_jax import fs  # pylint: disable=g-import-not-at-top
  if _WORKDIR_FLAG is not None and _WORKDIR_FLAG.value:
    fs.check_usable(_WORKDIR_FLAG.value, write=True)
  if idx_dir():
    fs.check_usable(idx_dir(), write=False)


def run(experiment: Callable[[], object], failures: tuple[type[BaseException], ...] = ()) -> None:
  """app.run for an experiment: one-line flag errors, runtime set-up, path checks, then `experiment()`."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    setup_runtime()
    run_cleanly(lambda: (check_paths(), experiment()), failures)

  app.run(main, flags_parser=parse_flags)
