"""Test-wide set-up: 8 fake CPU devices and the offline data location.

XLA reads XLA_FLAGS once, when the CPU backend starts, so this must run before any
test module imports jax.
"""
import os
import pathlib

from experiments import common  # noqa: E402  (imports neither jax nor TensorFlow)

# On a cold compilation cache (a CI machine) compiling dominates the suite: LLVM's
# -O1 instead of -O3 took it from 524 to 427 s on 2 cores, and the tests check
# values, not speed. Plus the entrypoints' XLA:CPU default (YNN library fusions
# off, see common.xla_flags_with_cpu_defaults), so tests compile what users run.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=1"
os.environ["XLA_FLAGS"] = common.xla_flags_with_cpu_defaults(
    os.environ.get("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE_FLAG}"), False,
    common.jaxlib_version())
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keep TensorFlow (used only by tf.data / TFDS) off any accelerator and small.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402
import tempfile  # noqa: E402

# Many tests compile the same programs (every smoke run of one config builds the
# same train step). A compilation cache shared by the session and its xdist
# workers, and by the subprocess runs of the robustness tests, compiles each once.
_CACHE_DIR = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                                   os.path.join(tempfile.gettempdir(), "gan_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_IDX_DIR = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def idx_dir() -> pathlib.Path:
  """Folder with the real MNIST / Fashion-MNIST IDX files (GAN_JAX_IDX_DIR or ../shared/datasets)."""
  path = pathlib.Path(os.environ.get("GAN_JAX_IDX_DIR", _DEFAULT_IDX_DIR)).resolve()
  if not (path / "mnist" / "train-labels-idx1-ubyte.gz").exists():
    raise FileNotFoundError(
        f"Real IDX files not found under {path}; set GAN_JAX_IDX_DIR to the folder holding mnist/ and fashion_mnist/."
    )
  return path
