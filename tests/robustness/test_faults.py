"""Faults injected into real `experiments.train_gan` runs: signals, kills, damaged checkpoints, NaNs.

Each test starts real subprocesses on the smoke config; the uninterrupted
reference run is shared by the tests of this module.
"""
import json
import pathlib
import random
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import runs

pytestmark = pytest.mark.slow
STEPS = 150
# A real way to diverge: an unbounded Wasserstein critic without gradient penalty and a huge
# learning rate overflows float32 after a few steps (step 18 of the smoke config here).
DIVERGING = ["--config.loss=wasserstein", "--config.lr_d=1000", "--config.lr_g=1000"]
LONG = [f"--config.num_steps={STEPS}", "--config.log_every=1", "--config.sample_every=1000",
        "--config.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run every interrupted one must reproduce step for step."""
  workdir = tmp_path_factory.mktemp("reference")
  result = runs.run(workdir, *LONG)
  assert result.returncode == 0, result.stderr[-3000:]
  records = runs.losses(workdir)
  assert [r["step"] for r in records] == list(range(1, STEPS + 1))
  return records


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_exits_zero_and_resume_is_exact(sig, tmp_path, reference):
  proc = runs.start(tmp_path, *LONG)
  runs.wait_for_step(tmp_path, 10, proc)
  code, stderr = runs.send(proc, sig)
  assert code == 0, stderr[-3000:]
  assert f"Stopped by {sig.name} at step" in stderr and "Rerun the same command to resume" in stderr
  assert not runs.has_traceback(stderr)
  stopped_at = runs.metrics(tmp_path)[-1]["step"]
  assert 10 <= stopped_at < STEPS
  assert str(stopped_at) in [p.name for p in (tmp_path / "checkpoints").iterdir()]

  rerun = runs.run(tmp_path, *LONG)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"Resuming from step {stopped_at}" in rerun.stderr
  assert runs.losses(tmp_path) == reference


def test_sigkill_anytime_resumes_from_last_complete_checkpoint(tmp_path, reference):
  frequent_saves = LONG + ["--config.checkpoint_every=3"]
  rng = random.Random(0)
  for attempt in range(2):
    proc = runs.start(tmp_path, *frequent_saves)
    runs.wait_for_step(tmp_path, 5 if attempt == 0 else runs.metrics(tmp_path)[-1]["step"] + 5, proc)
    time.sleep(rng.uniform(0.0, 0.3))  # lands inside steps and inside async saves
    proc.kill()
    proc.wait(timeout=30)
  rerun = runs.run(tmp_path, *frequent_saves)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert runs.losses(tmp_path) == reference


def test_damaged_checkpoint_is_skipped_with_a_warning(tmp_path, reference):
  short = ["--config.num_steps=30", "--config.log_every=1", "--config.sample_every=1000", "--config.checkpoint_every=10"]
  first = runs.run(tmp_path, *short)
  assert first.returncode == 0, first.stderr[-3000:]
  damaged = tmp_path / "checkpoints" / "30"
  for path in damaged.rglob("*"):
    if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
      path.write_bytes(b"")  # truncated after the commit, e.g. a disk error
  longer = ["--config.num_steps=40"] + short[1:]
  rerun = runs.run(tmp_path, *longer)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"Skipping damaged checkpoint {damaged}" in rerun.stderr
  assert "Resuming from step 20" in rerun.stderr
  assert (tmp_path / "checkpoints" / "30.damaged").is_dir()  # kept for inspection, not deleted
  assert runs.losses(tmp_path) == reference[:40]


def restore_params(workdir: pathlib.Path):
  ckpt_dir = workdir / "checkpoints"
  steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  manager = ocp.CheckpointManager(ckpt_dir)
  restored = manager.restore(steps[-1], args=ocp.args.StandardRestore())
  return steps, restored


def test_nonfinite_loss_stops_naming_step_loss_and_checkpoint(tmp_path):
  result = runs.run(tmp_path, *DIVERGING)
  assert result.returncode == 1
  assert not runs.has_traceback(result.stderr)
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith("error: Non-finite") and "at step" in line and "Last good checkpoint: step" in line
  steps, restored = restore_params(tmp_path)
  bad_step = int(line.split("at step ")[1].split(";")[0])
  assert max(steps) < bad_step and f"Last good checkpoint: step {max(steps)} in" in line
  bad_names = line.split("Non-finite ")[1].split(" at step")[0].split(", ")
  assert set(bad_names) <= {"gradients/parameters", "d_loss", "g_loss", "d_adversarial", "g_adversarial",
                            "d_real", "d_fake"}, bad_names
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored) if np.issubdtype(np.asarray(x).dtype,
                                                                                          np.floating))


def test_nonfinite_skip_drops_the_update_and_counts_it(tmp_path):
  result = runs.run(tmp_path, *DIVERGING, "--config.on_nonfinite=skip")
  assert result.returncode == 0, result.stderr[-3000:]
  records = runs.metrics(tmp_path)
  assert records[-1]["step"] == 20 and records[-1]["nonfinite_skips"] > 0
  _, restored = restore_params(tmp_path)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored) if np.issubdtype(np.asarray(x).dtype,
                                                                                          np.floating))


def test_same_config_and_seed_give_identical_metrics(tmp_path, reference):
  result = runs.run(tmp_path, *LONG)
  assert result.returncode == 0, result.stderr[-3000:]
  assert runs.losses(tmp_path) == reference
  raw = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert all(set(r) - set(runs.TIMING_KEYS) for r in raw)
