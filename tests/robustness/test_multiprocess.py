"""Two processes (coordinator on 127.0.0.1, CPU collectives, 2 fake devices each) = one process with 4;
SIGTERM to one of them stops both at the same step."""
import signal
import socket
import subprocess

import pytest

import runs

pytestmark = pytest.mark.slow
STEPS = 60
FLAGS = [f"--config.num_steps={STEPS}", "--config.log_every=1", "--config.checkpoint_every=1000",
         "--config.sample_every=1000"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_pair(workdir, address, *flags):
  return [subprocess.Popen(runs.command(workdir, *flags, f"--coordinator_address={address}", "--num_processes=2",
                                        f"--process_id={i}"),
                           cwd=runs.ROOT, env=runs.env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for i in range(2)]


def test_two_processes_stop_together_on_one_sigterm_resume_and_match_one_process(tmp_path):
  single = tmp_path / "single"
  result = runs.run(single, *FLAGS, devices=4)
  assert result.returncode == 0, result.stderr[-3000:]

  # A maintenance event reaches one TPU VM worker only; the other must stop with it, not deadlock.
  multi = tmp_path / "multi"
  procs = _start_pair(multi, f"127.0.0.1:{free_port()}", *FLAGS)
  runs.wait_for_step(multi, 3, procs[0])
  procs[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=120) for p in procs]
  stopped_at = set()
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]
    line = next(l for l in stderr.splitlines() if "Stopped by" in l)
    stopped_at.add(int(line.split(" at step ")[1].split(";")[0]))
  assert "Stopped by SIGTERM" in outputs[1][1] and "Stopped by a signal on another process" in outputs[0][1]
  (step,) = stopped_at  # both processes checkpointed one and the same step
  assert step < STEPS and [p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()] == [str(step)]

  rerun = _start_pair(multi, f"127.0.0.1:{free_port()}", *FLAGS)
  outputs = [p.communicate(timeout=240) for p in rerun]
  for proc, (_, stderr) in zip(rerun, outputs):
    assert proc.returncode == 0, stderr[-3000:]
  assert f"Resuming from step {step}" in outputs[0][1]

  # One record per step (only process 0 writes), equal to the single-process run's, across the stop.
  multi_losses, single_losses = runs.losses(multi), runs.losses(single)
  assert [r["step"] for r in multi_losses] == list(range(1, STEPS + 1))
  assert len(multi_losses) == len(single_losses)
  for a, b in zip(multi_losses, single_losses):
    assert a.keys() == b.keys()
    for key in a:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
  assert max(int(p.name) for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == STEPS
