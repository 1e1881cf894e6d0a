"""URL workdirs: every output of a run lands in the (emulated) bucket, none on the local disk; bad URLs fail fast."""
import os
import subprocess
import sys
import time

import pytest
from etils import epath

from gan_jax import fs
from gan_jax import metric_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "experiments/configs/mlp_gan_mnist.py:smoke"


def train_gan(workdir, cwd, *flags, env=None, timeout=240):
  # Compiling dominates these short runs (see FAST_COMPILE_FLAG in conftest.py).
  env = {**os.environ, **(env or {}),
         "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {os.environ['GAN_JAX_TEST_COMPILE_FLAGS']}"}
  return subprocess.run([sys.executable, "-m", "experiments.train_gan", f"--config={os.path.join(ROOT, SMOKE)}",
                         f"--workdir={workdir}", *flags], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_train_gan_in_a_bucket_writes_nothing_locally_and_resumes_from_it(gcs, tmp_path, idx_dir):
  workdir = f"{gcs.root}/runs/mlp"
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = {**gcs.env, "GAN_JAX_IDX_DIR": str(idx_dir)}
  first = train_gan(workdir, cwd, "--config.num_steps=10", env=env)
  assert first.returncode == 0, first.stderr[-3000:]
  files = gcs.files(workdir)
  assert {"config.json", "metrics.jsonl", "final_metrics.json", "loss_curves.png",
          "samples/step_00000010.png"} <= set(files), files
  assert any(f.startswith("checkpoints/10/") for f in files)
  assert any(f.startswith("tensorboard/events.out.tfevents") for f in files)
  assert os.listdir(cwd) == []  # no folder named 'gs:', no stray outputs
  assert [r["step"] for r in metric_writer.read_metrics(workdir)] == [5, 10]

  rerun = train_gan(workdir, cwd, env=env)  # num_steps back to the smoke config's 20
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resuming from step 10" in rerun.stderr
  assert [r["step"] for r in metric_writer.read_metrics(workdir)] == [5, 10, 15, 20]
  assert any(f.startswith("checkpoints/20/") for f in gcs.files(workdir)) and os.listdir(cwd) == []


@pytest.mark.parametrize("workdir, fragment", [
    ("hdfs://cluster/runs/x", "unknown scheme 'hdfs://'; use a local path or one of gs://"),
    ("s3://bucket/runs/x", "Cannot write to s3://bucket/runs/x"),
])
def test_a_workdir_without_a_backend_is_one_line_within_seconds(workdir, fragment, tmp_path):
  start = time.monotonic()
  result = train_gan(workdir, tmp_path)
  assert time.monotonic() - start < 10 + 5  # the probe's limit plus the interpreter's start
  assert result.returncode == 2 and "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and fragment in last, last
  assert os.listdir(tmp_path) == []


class _FailingPath(epath.gpath.PosixGPath):
  """A registered scheme whose store refuses every write (a bucket without permission)."""

  def mkdir(self, *args, **kwargs):
    raise PermissionError("403: the caller does not have storage.objects.create access")


def test_a_registered_scheme_that_refuses_writes_names_the_path_and_what_to_check():
  epath.register_path_cls("refusing://")(_FailingPath)
  with pytest.raises(fs.UnusablePathError, match=r"Cannot write to refusing://bucket/run \(PermissionError: 403.*"
                                                 r"check that a backend for refusing:// is installed"):
    fs.check_usable("refusing://bucket/run", write=True)
  with pytest.raises(fs.UnusablePathError, match="does not exist"):
    fs.check_usable("/no/such/folder/anywhere", write=False)
