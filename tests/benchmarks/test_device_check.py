"""benchmarks.device_check: --tiny runs every part on the CPU and writes JSON and markdown; bad input exits 2."""
import json
import math
import os
import subprocess
import sys

import chex
import pytest

from benchmarks import device_tables
from benchmarks import stacked_benchmark
from benchmarks import step_benchmark

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Two models keep the test's compilations few; every model's step is tested in test_step_benchmark.
TINY_MODELS = "dcgan_mnist,classifier"


def _run_check(*args, timeout=600):
  # One CPU device and fast compilation for the child, as the step benchmark's entrypoint tests.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["GAN_JAX_TEST_COMPILE_FLAGS"]}
  return subprocess.run([sys.executable, "-m", "benchmarks.device_check", *args], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("device_check")
  proc = _run_check(f"--out={out}", "--tiny", f"--models={TINY_MODELS}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((out / "device_check.json").read_text()), (out / "device_check.md").read_text()


def _positive(x):
  return x is not None and math.isfinite(x) and x > 0


def test_tiny_run_measures_every_part(tiny_run):
  result, _ = tiny_run
  assert set(result["parts"]) == {"peaks", "models", "stacked", "imbalance", "singan"}
  assert result["command"].startswith("python -m benchmarks.device_check --out=")
  peaks = result["parts"]["peaks"]
  assert all(_positive(peaks[k]) for k in ("bfloat16", "float32", "float32_highest"))


def test_tiny_models_compare_with_torch_and_pick_the_fastest_setting(tiny_run):
  models = tiny_run[0]["parts"]["models"]
  assert list(models) == TINY_MODELS.split(",")
  for entry in models.values():
    assert _positive(entry["base"]["images_per_sec"])
    assert _positive(entry["base"]["torch_eager_images_per_sec"])
    assert _positive(entry["base"]["speedup_vs_torch_eager"])
    assert {(s["batch_size"], s["dtype"]) for s in entry["sweep"]} == {(8, "float32"), (16, "float32")}
    assert entry["best"]["images_per_sec"] == max(s["images_per_sec"] for s in entry["sweep"])
    assert entry["failures"] == []


def test_tiny_stacked_programs_agree_with_sequential_training(tiny_run):
  rows = tiny_run[0]["parts"]["stacked"]["rows"]
  assert [(r["model"], r["members"]) for r in rows] == [("classifier", 3), ("dcgan_mnist", 2)]
  for r in rows:
    assert _positive(r["stacked_speedup"])
    assert r["max_state_difference_after_one_step"] < 1e-4


def test_tiny_imbalance_extrapolates_the_full_run(tiny_run):
  imbalance = tiny_run[0]["parts"]["imbalance"]
  assert imbalance["methods_run"] == ["none", "cgan"]
  assert imbalance["classifier_stages"] == 2  # two methods, one seed
  assert "cgan" in imbalance["generator_pipeline_s"]
  assert imbalance["estimated_extra_classifiers"] == len(imbalance["methods_full"]) - 2
  assert imbalance["full_run_estimate_s"] > imbalance["wall_s"] > 0
  assert set(imbalance["balanced_accuracy_mean"]) == {"none", "cgan"}


def test_tiny_singan_runs_every_scale_and_output(tiny_run):
  singan = tiny_run[0]["parts"]["singan"]
  assert singan["scales"] == len(singan["scale_seconds"]) == 3
  assert all(_positive(s) for s in singan["scale_seconds"])
  assert len(singan["outputs"]) >= 4


def test_markdown_has_a_section_per_part(tiny_run):
  _, markdown = tiny_run
  for heading in ("## Matmul peaks", "## Train-step throughput against PyTorch", "## Many models as one program",
                  "## Imbalance benchmark", "## SinGAN end to end"):
    assert heading in markdown
  assert "| dcgan_mnist | base | 8 | float32 |" in markdown


@pytest.mark.parametrize("args, message", [
    (["--parts=peaks,warp"], "error: Unknown part 'warp'; choose from: peaks, models, stacked, imbalance, singan"),
    (["--models=biggan"], "error: Unknown model 'biggan'; choose from: " + ", ".join(step_benchmark.MODELS)),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
  proc = _run_check(f"--out={tmp_path}", *args, timeout=120)
  assert proc.returncode == 2
  assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [message]
  assert not (tmp_path / "device_check.json").exists()


def test_stacked_members_equal_their_sequential_runs():
  # One vmapped step leaves each member where its own step does (CPU: bit-level agreement).
  result = stacked_benchmark.run(stacked_benchmark.StackedOptions(model="classifier", members=2, batch_size=4,
                                                                  steps=1, warmup=0))
  chex.assert_scalar_non_negative(result["max_state_difference_after_one_step"])
  assert result["max_state_difference_after_one_step"] < 1e-5
  assert result["stacked_model_steps_per_sec"] == pytest.approx(2 / result["stacked_call_median_s"])


def test_stacked_rejects_no_members():
  with pytest.raises(ValueError, match="members must be >= 1, got 0"):
    stacked_benchmark.run(stacked_benchmark.StackedOptions(model="classifier", members=0))


def test_tables_render_a_failed_model_row():
  text = device_tables.render("cmd", {"versions": {}}, {"models": {"dcgan_mnist": {"error": "CUDA_ERROR_X"}}})
  assert "| dcgan_mnist | failed: CUDA_ERROR_X |" in text
