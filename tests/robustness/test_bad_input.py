"""Bad input ends a real `experiments.train_gan` run within seconds, with one line and no traceback."""
import gzip
import logging
import shutil
import time

import pytest

import runs
from experiments import common

pytestmark = pytest.mark.slow
SMOKE_FLAGS = ["--config.num_steps=2", "--config.log_every=1"]
TEN = lambda first: ",".join([str(first)] + ["10"] * 9)


def assert_one_line_error(result, fragment, seconds):
  assert result.returncode == 2, result.stderr[-3000:]
  assert not runs.has_traceback(result.stderr), result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and fragment in last, last
  assert seconds < 60


@pytest.mark.parametrize("flags, fragment", [
    (["--config.model=biggan"], "Unknown model 'biggan'; choose one of: mlp_gan, dcgan"),
    (["--config.loss=kl"], "Unknown loss 'kl'; choose one of:"),
    (["--config.dataset=svhn"], "Unknown dataset 'svhn'; choose one of: cifar10, fashion_mnist, mnist"),
    (["--config.dataset=folder:/no/such/folder"], "image folder /no/such/folder does not exist"),
    (["--config.foo=1"], "Unknown config field 'foo'"),
    (["--config=experiments/configs/mlp_gan_mnist.py:tiny"], "Unknown config variant 'tiny'"),
    (["--config=experiments/configs/no_such_gan.py"], "No such file or directory"),
    (["--config.batch_size=12"], "batch_size=12 is not divisible by the number of devices (8)"),
    ([f"--config.imbalance={TEN(7000)}"], "class 0 has 5923 images, asked for 7000"),
    ([f"--config.imbalance={TEN(0)}"], "must be positive, got 0"),
    ([f"--config.imbalance={TEN(-5)}"], "must be positive, got -5"),
    (["--config.imbalance=4000,2000,1000"], "3 counts but the data has 10 classes"),
    (["--config.imbalance=pareto"], "Unknown imbalance profile 'pareto'"),
])
def test_bad_flags(flags, fragment, tmp_path):
  start = time.time()
  result = runs.run(tmp_path / "run", *flags, devices=8)
  assert_one_line_error(result, fragment, time.time() - start)


def copy_idx(src, dst):
  shutil.copytree(src / "mnist", dst / "mnist")
  return dst


def test_missing_idx_file(tmp_path, idx_dir):
  data = copy_idx(idx_dir, tmp_path / "data")
  missing = data / "mnist" / "train-images-idx3-ubyte.gz"
  missing.unlink()
  start = time.time()
  result = runs.run(tmp_path / "run", extra_env={"GAN_JAX_IDX_DIR": str(data)})
  assert_one_line_error(result, "train-images-idx3-ubyte", time.time() - start)


def test_corrupt_idx_file(tmp_path, idx_dir):
  data = copy_idx(idx_dir, tmp_path / "data")
  labels = data / "mnist" / "train-labels-idx1-ubyte.gz"
  with gzip.open(labels, "rb") as f:
    content = f.read()
  with gzip.open(labels, "wb") as f:
    f.write(content[:-100])  # truncated payload
  start = time.time()
  result = runs.run(tmp_path / "run", extra_env={"GAN_JAX_IDX_DIR": str(data)})
  assert_one_line_error(result, str(labels), time.time() - start)


def test_workdir_with_a_different_config(tmp_path):
  # A run folder recorded by a run with another learning rate (what train_gan writes first);
  # refusing, extending and overwriting are covered in-process by tests/train/test_gan_loop.py.
  first = runs.run(tmp_path, *SMOKE_FLAGS, "--config.num_steps=1", "--config.log_every=1")
  assert first.returncode == 0, first.stderr[-3000:]
  start = time.time()
  second = runs.run(tmp_path, *SMOKE_FLAGS, "--config.lr_g=0.001")
  assert_one_line_error(second, "holds a run with a different config (lr_g: 0.0002 -> 0.001)", time.time() - start)


def test_console_shows_progress_not_library_logs(tmp_path):
  result = runs.run(tmp_path / "quiet")  # the 20-step smoke run
  assert result.returncode == 0, result.stderr[-3000:]
  lines = (result.stdout + result.stderr).strip().splitlines()
  assert len(lines) <= 30, "\n".join(lines)
  progress = [line for line in lines if "[mlp_gan] step" in line]
  assert len(progress) == 4 and all("| ETA" in line for line in progress)
  assert not any("checkpoint_manager.py" in line for line in lines)


@pytest.mark.parametrize("path, level, shown", [
    ("orbax/checkpoint/checkpoint_manager.py", logging.INFO, False),
    ("orbax/checkpoint/checkpoint_manager.py", logging.WARNING, True),
    ("gan_jax/progress.py", logging.INFO, True),
    ("experiments/imbalance.py", logging.INFO, True),
])
def test_only_the_projects_info_lines_reach_the_console_by_default(path, level, shown):
  root = runs.ROOT if path.split("/")[0] in ("gan_jax", "experiments") else runs.ROOT / ".venv/lib/site-packages"
  record = logging.LogRecord("absl", level, str(root / path), 1, "message", None, None)
  assert common.project_logs_only(record) == shown
