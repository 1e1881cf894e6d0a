"""launch.sh: the commands it would run (--dry-run), and its usage errors."""
import pathlib
import shlex
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def launch(*args, env=None):
  return subprocess.run(["bash", str(ROOT / "launch.sh"), *args], capture_output=True, text=True, env=env,
                        timeout=30)


def test_tpu_runs_the_same_command_on_every_worker():
  result = launch("--dry-run", "tpu", "my-tpu", "us-central2-b", "experiments.train_gan",
                  "--config=experiments/configs/dcgan_mnist.py", "--workdir=gs://bucket/run 1")
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  assert "--zone=us-central2-b" in argv and "--worker=all" in argv
  remote = next(a for a in argv if a.startswith("--command="))[len("--command="):]
  remote_argv = shlex.split(remote)
  # The remote side calls the local runner with the module and flags intact (quoting preserved).
  assert remote_argv[-5:] == ["./launch.sh", "run", "experiments.train_gan",
                              "--config=experiments/configs/dcgan_mnist.py", "--workdir=gs://bucket/run 1"]


def test_run_uses_the_project_virtualenv():
  result = launch("--dry-run", "run", "experiments.train_gan", "--workdir=/tmp/x")
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  assert argv[0] == str(ROOT / ".venv" / "bin" / "python")
  assert argv[1:] == ["-m", "experiments.train_gan", "--workdir=/tmp/x"]


def test_setup_creates_venv_and_installs_all_extras():
  result = launch("--dry-run", "setup")
  assert result.returncode == 0, result.stderr
  lines = [shlex.split(line) for line in result.stdout.splitlines()]
  assert lines[0][1:3] == ["-m", "venv"]
  assert lines[-1][-3:] == ["install", "-e", f"{ROOT}[all]"]


def test_unknown_command_prints_usage_and_fails():
  result = launch("deploy")
  assert result.returncode == 2
  assert "launch.sh tpu TPU_NAME ZONE MODULE" in result.stderr


def test_tpu_without_module_is_a_usage_error():
  result = launch("--dry-run", "tpu", "only-name")
  assert result.returncode == 2
