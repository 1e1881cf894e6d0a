"""Test-wide set-up: 8 fake CPU devices and the offline data location.

XLA reads XLA_FLAGS once, when the CPU backend starts, so this must run before any
test module imports jax.
"""
import os
import pathlib

from experiments import common  # noqa: E402  (imports neither jax nor TensorFlow)

# On a cold compilation cache (a CI machine) compiling dominates the suite: LLVM's
# -O0 instead of -O3 compiles the GAN steps about 1.4x faster, and the tests check
# values, not speed. Subprocess runs read the flag from GAN_JAX_TEST_COMPILE_FLAGS.
# Plus the entrypoints' XLA:CPU default (YNN library fusions off, see
# common.xla_flags_with_cpu_defaults), so tests compile what users run.
FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
os.environ.setdefault("GAN_JAX_TEST_COMPILE_FLAGS", FAST_COMPILE_FLAG)
os.environ["XLA_FLAGS"] = common.xla_flags_with_cpu_defaults(
    os.environ.get("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE_FLAG}"), False,
    common.jaxlib_version())
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keep TensorFlow (used only by tf.data / TFDS) off any accelerator and small.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# gs:// paths go through gcsfs (to the Cloud Storage server of the `gcs` fixture), never through
# TensorFlow's GCS client; epath caches this choice the first time it resolves a gs:// path.
os.environ["EPATH_USE_TF"] = "false"
# A relative $GAN_JAX_IDX_DIR (CI sets ../shared/datasets) names a folder beside the
# repository; subprocess runs may start in another folder, so they get it absolute.
# Unset, it defaults to the shared folder beside the checkout.
os.environ.setdefault("GAN_JAX_IDX_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets"))
if "://" not in os.environ["GAN_JAX_IDX_DIR"]:
  os.environ["GAN_JAX_IDX_DIR"] = os.path.abspath(os.environ["GAN_JAX_IDX_DIR"])

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


@pytest.fixture(scope="module", autouse=True)
def mesh_devices(request):
  """A module that sets MESH_DEVICES = n runs its meshes over the first n of the 8 devices.

  For modules of end-to-end runs whose assertions do not depend on the device count: on 2
  cores, 8 fake devices make a small run's execution markedly slower (the translation smoke
  runs up to 2.5x). Module-scoped and autouse, so it encloses the module's run fixtures.
  """
  count = getattr(request.module, "MESH_DEVICES", None)
  if count is None:
    yield None
    return
  import jax  # pylint: disable=g-import-not-at-top  # after XLA_FLAGS is set above
  from gan_jax import parallel  # pylint: disable=g-import-not-at-top
  with parallel.use_devices(jax.devices()[:count]):
    yield count


@pytest.fixture(scope="session")
def idx_dir() -> pathlib.Path:
  """Folder with the real MNIST / Fashion-MNIST IDX files (GAN_JAX_IDX_DIR or ../shared/datasets)."""
  path = pathlib.Path(os.environ.get("GAN_JAX_IDX_DIR", _DEFAULT_IDX_DIR)).resolve()
  if not (path / "mnist" / "train-labels-idx1-ubyte.gz").exists():
    raise FileNotFoundError(
        f"Real IDX files not found under {path}; set GAN_JAX_IDX_DIR to the folder holding mnist/ and fashion_mnist/."
    )
  return path


class EmulatedBucket:
  """A Google Cloud Storage emulator on 127.0.0.1: gs:// paths work here as on a TPU VM, offline.

  epath (through gcsfs) and Orbax's tensorstore both talk to it, so every file of a run,
  checkpoints included, goes through the same code paths as on a real bucket.
  """

  def __init__(self, url: str, bucket: str):
    self.url, self.root = url, f"gs://{bucket}"
    # The test process reads what subprocess runs wrote: gcsfs must not answer from its listing cache.
    self.env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "EPATH_USE_TF": "false",
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test", "FSSPEC_GS": '{"use_listings_cache": false}',
                "FSSPEC_GCS": '{"use_listings_cache": false}'}

  def files(self, path: str) -> list[str]:
    """Every object below `path`, relative to it, sorted."""
    from etils import epath  # pylint: disable=g-import-not-at-top
    base = path.split("://", 1)[1].rstrip("/") + "/"  # walk() may drop the scheme from what it yields
    return sorted(str(root / name).split(base, 1)[1] for root, _, names in epath.Path(path).walk() for name in names)


@pytest.fixture(scope="session")
def gcs():
  """The emulated bucket, with this process's environment pointing at it for the session."""
  import gcs_server  # pylint: disable=g-import-not-at-top
  server = gcs_server.Server(["gan-jax-test"]).start()
  bucket = EmulatedBucket(server.url, "gan-jax-test")
  saved = {k: os.environ.get(k) for k in bucket.env}
  os.environ.update(bucket.env)
  import fsspec.config  # pylint: disable=g-import-not-at-top
  fsspec.config.set_conf_env(fsspec.config.conf)
  yield bucket
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.stop()


# Modules by their measured cold-cache time, slowest first (`--durations` of a full run). xdist's
# loadscope hands out whole modules in collection order; slowest first keeps the two workers
# busy to the end instead of leaving one module of several minutes for last.
SLOWEST_MODULES_FIRST = (
    "tests/protocols/imbalance/test_pipeline.py",
    "tests/benchmarks/test_step_benchmark.py",
    "tests/diffusion/test_train.py",
    "tests/translation/test_translate_run.py",
    "tests/robustness/test_faults.py",
    "tests/benchmarks/test_device_check.py",
    "tests/train/test_gan_step.py",
    "tests/train/test_stylegan2_training.py",
    "tests/train/test_gan_loop.py",
    "tests/protocols/imbalance/test_style_and_progressive_generators.py",
    "tests/diffusion/test_first_stage_critic.py",
    "tests/diffusion/test_schedule_and_sampling.py",
    "tests/train/test_progan_training.py",
    "tests/singan/test_singan.py",
    "tests/robustness/test_bad_input.py",
    "tests/kernels/test_canonical_conv.py",
    "tests/train/test_classifier_loop.py",
    "tests/translation/test_translation_step.py",
    "tests/robustness/test_multiprocess.py",
    "tests/singan/test_singan_analogy.py",
    "tests/models/test_gan_models.py",
    "tests/models/test_translation_models.py",
    "tests/train/test_stacked_gan_loop.py",
    "tests/protocols/imbalance/test_cifar10_lt.py",
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {module: i for i, module in enumerate(SLOWEST_MODULES_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
