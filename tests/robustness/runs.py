"""Helpers to run `experiments.train_gan` in real subprocesses (imported by the robustness tests)."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "experiments/configs/mlp_gan_mnist.py:smoke"
TIMING_KEYS = ("images_per_sec",)


def env(devices: int = 2, **extra) -> dict:
  result = dict(os.environ)
  # Compiling dominates these short runs (see FAST_COMPILE_FLAG in conftest.py).
  result["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {os.environ['GAN_JAX_TEST_COMPILE_FLAGS']}"
  result["PYTHONUNBUFFERED"] = "1"
  result.update(extra)
  return result


def command(workdir, *flags, config=SMOKE, module="experiments.train_gan") -> list[str]:
  return [sys.executable, "-m", module, f"--config={config}", f"--workdir={workdir}", *flags]


def run(workdir, *flags, timeout=180, devices=2, config=SMOKE, extra_env=None) -> subprocess.CompletedProcess:
  return subprocess.run(command(workdir, *flags, config=config), cwd=ROOT, env=env(devices, **(extra_env or {})),
                        capture_output=True, text=True, timeout=timeout)


def start(workdir, *flags, devices=2) -> subprocess.Popen:
  return subprocess.Popen(command(workdir, *flags), cwd=ROOT, env=env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      break  # a line being written right now
  return records


def losses(workdir) -> list[dict]:
  """Metrics records without wall-clock fields, which legitimately differ between runs."""
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in metrics(workdir)]


def wait_for_step(workdir, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    records = metrics(workdir)
    if records and records[-1]["step"] >= step:
      return
    if proc.poll() is not None:
      raise AssertionError(f"run ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    time.sleep(0.05)
  proc.kill()
  raise AssertionError(f"step {step} not reached in {timeout} s")


def send(proc: subprocess.Popen, sig: signal.Signals, timeout: float = 60) -> tuple[int, str]:
  proc.send_signal(sig)
  _, stderr = proc.communicate(timeout=timeout)
  return proc.returncode, stderr


def has_traceback(stderr: str) -> bool:
  return "Traceback (most recent call last)" in stderr
