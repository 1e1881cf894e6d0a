"""Two processes (coordinator on 127.0.0.1, CPU collectives, 2 fake devices each) = one process with 4."""
import socket
import subprocess

import pytest

import runs

pytestmark = pytest.mark.slow
FLAGS = ["--config.num_steps=12", "--config.log_every=1", "--config.checkpoint_every=6", "--config.sample_every=6"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_as_many_devices(tmp_path):
  single = tmp_path / "single"
  result = runs.run(single, *FLAGS, devices=4)
  assert result.returncode == 0, result.stderr[-3000:]

  multi = tmp_path / "multi"
  address = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen(runs.command(multi, *FLAGS, f"--coordinator_address={address}", "--num_processes=2",
                                         f"--process_id={i}"),
                            cwd=runs.ROOT, env=runs.env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=240) for p in procs]
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]

  # One record per step (only process 0 writes), equal to the single-process run's.
  multi_losses, single_losses = runs.losses(multi), runs.losses(single)
  assert [r["step"] for r in multi_losses] == list(range(1, 13))
  assert len(multi_losses) == len(single_losses)
  for a, b in zip(multi_losses, single_losses):
    assert a.keys() == b.keys()
    for key in a:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
  assert sorted(p.name for p in (multi / "samples").iterdir()) == ["step_00000006.png", "step_00000012.png"]
  assert sorted(p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == ["12", "6"]
