"""The diffusion sampling benchmark: its figures agree with each other, and bad input fails in one line."""
import re
import subprocess
import sys

import pytest

from benchmarks import sampling_benchmark
from experiments.configs import ddpm_mnist
from experiments.configs import ldm_mnist


@pytest.mark.parametrize("module", [ldm_mnist, ddpm_mnist])
def test_rows_follow_the_asked_step_counts_and_their_images_per_second(module):
  config = module.get_config("smoke")
  opts = sampling_benchmark.SamplingOptions(sample_steps=(2, 5), batch_size=6, repeats=2)
  result = sampling_benchmark.run(config, opts, image_shape=(28, 28, 1), num_classes=10)
  assert [row["sample_steps"] for row in result["rows"]] == [2, 5]
  for row in result["rows"]:
    assert len(row["seconds_per_batch"]) == 2
    assert row["images_per_sec"] == pytest.approx(6 / row["seconds_per_batch_median"])
    assert row["denoiser_evaluations_per_image"] == 2 * row["sample_steps"]  # guided: two branches a step
    assert row["image_shape"] == [28, 28, 1]  # the ldm's samples are decoded to pixels
  assert result["data_shape"] == ([7, 7, 4] if config.model == "ldm" else [28, 28, 1])
  table = sampling_benchmark.format_table(result)
  assert table.count("\n| ") == 3 and "| 5 |" in table


@pytest.mark.parametrize("args, message", [
    (["--sample_steps=10,200"], r"sample_steps 200 must lie in \[1, 100\]"),
    (["--sample_steps=ten"], "--sample_steps must be integers, got ten"),
    (["--batch_size=0"], "batch_size must be >= 1, got 0"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.benchmark_sampling",
                        "--config=experiments/configs/ldm_mnist.py:smoke", *args],
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and re.search(message, lines[0]), out.stderr
