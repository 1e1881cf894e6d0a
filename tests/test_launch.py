"""launch.sh: the commands it would run (--dry-run), and its usage errors."""
import os
import pathlib
import shlex
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def launch(*args, env=None):
  return subprocess.run(["bash", str(ROOT / "launch.sh"), *args], capture_output=True, text=True, env=env,
                        timeout=30)


def remote_command(argv):
  return next(a for a in argv if a.startswith("--command="))[len("--command="):]


def test_tpu_runs_the_same_command_on_every_worker_with_distributed():
  env = {**os.environ, "TPU_PROJECT": "my-project", "GAN_JAX_IDX_DIR": "gs://bucket/data sets"}
  env.pop("TFDS_DATA_DIR", None)
  result = launch("--dry-run", "tpu", "my-tpu", "us-central2-b", "experiments.train_gan",
                  "--config=experiments/configs/dcgan_mnist.py", "--workdir=gs://bucket/run 1", env=env)
  assert result.returncode == 0, result.stderr
  argv = shlex.split(result.stdout)
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
  assert {"--zone=us-central2-b", "--worker=all", "--project=my-project"} <= set(argv)
  remote = shlex.split(remote_command(argv))
  # The remote side calls the local runner with the module and flags intact (quoting preserved), once
  # with --distributed, the data folder passed on, and the console kept for tpu-logs.
  run = remote.index("./launch.sh")
  assert remote[run - 1] == "GAN_JAX_IDX_DIR=gs://bucket/data sets"
  assert remote[run:run + 6] == ["./launch.sh", "run", "experiments.train_gan",
                                 "--config=experiments/configs/dcgan_mnist.py", "--workdir=gs://bucket/run 1",
                                 "--distributed"]
  assert remote[-2:] == ["tee", "~/gan_jax_console.log"]
  again = launch("--dry-run", "tpu", "my-tpu", "zone", "experiments.imbalance", "--distributed", env=env)
  assert shlex.split(remote_command(shlex.split(again.stdout))).count("--distributed") == 1


def test_tpu_setup_copies_the_working_tree_or_clones_a_repository():
  copy = [shlex.split(line) for line in launch("--dry-run", "tpu-setup", "my-tpu", "zone-a", "--copy").stdout
          .splitlines()]
  assert copy[0][:3] == ["git", "-C", str(ROOT)] and "--exclude-standard" in copy[0]
  assert copy[1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in copy[1]
  assert copy[1][5:7] == ["/tmp/gan_jax_code.tar.gz", "my-tpu:gan_jax_code.tar.gz"]
  install = shlex.split(remote_command(copy[2]))
  assert install[-2:] == ["./launch.sh", "setup"] and "JAX_EXTRA=tpu" in install and "--zone=zone-a" in copy[2]
  clone = shlex.split(launch("--dry-run", "tpu-setup", "my-tpu", "zone-a",
                             "--repo=https://example.org/gan jax.git").stdout)
  steps = shlex.split(remote_command(clone))
  assert steps[:4] == ["git", "clone", "https://example.org/gan jax.git", "gan_jax"]
  assert steps[-2:] == ["./launch.sh", "setup"]
  assert launch("--dry-run", "tpu-setup", "my-tpu", "zone-a", "--rsync").returncode == 2


def test_tpu_logs_follows_process_zero():
  argv = shlex.split(launch("--dry-run", "tpu-logs", "my-tpu", "zone-a").stdout)
  assert "--worker=0" in argv and shlex.split(remote_command(argv))[:2] == ["tail", "-n"]


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


def readme_launch_commands():
  """Every `./launch.sh` command of the README's TPU section, continuation lines joined."""
  readme = (ROOT / "README.md").read_text()
  section = readme.split("## TPU VMs, GPUs and cloud workdirs")[1].split("\n## ")[0]
  block = section.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
  commands = []
  for line in block.splitlines():
    words = shlex.split(line.split("#")[0])
    env = {}
    while words and "=" in words[0] and not words[0].startswith("./"):
      key, value = words.pop(0).split("=", 1)
      env[key] = value
    if words and words[0] == "./launch.sh":
      commands.append((env, words[1:]))
  return commands


def test_every_launch_command_of_the_readme_dry_runs():
  commands = readme_launch_commands()
  assert {words[0] for _, words in commands} == {"tpu-setup", "tpu", "tpu-logs"}
  for env, words in commands:
    result = launch("--dry-run", *words, env={**os.environ, **env})
    assert result.returncode == 0, (words, result.stderr)
    assert result.stdout.startswith(("gcloud compute tpus tpu-vm", "git -C")), result.stdout
    if words[0] == "tpu":
      remote = shlex.split(remote_command(shlex.split(result.stdout.splitlines()[-1])))
      assert "--distributed" in remote and all(f"{k}={v}" in remote for k, v in env.items())
