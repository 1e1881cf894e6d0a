"""Two-image structural analogy: a tiny A <-> B run writes both translations and resumes per scale."""
import json
import shutil

import numpy as np
from PIL import Image

from experiments.configs import singan as singan_config
from gan_jax.singan import train


def tiny_pair_config():
  config = singan_config.get_config("smoke")
  config.image_b = "skimage:coffee"
  # Two scales of 14x21 and 16x24 keep the two-image step cheap to compile.
  config.max_size = 24
  config.min_size = 14
  config.iters_per_scale = 8
  config.chunk_size = 8
  config.lr_milestone = 6
  config.num_samples = 2
  config.sr_factor = 1.5
  return config


def test_analogy_writes_translations_and_resumes_per_scale(tmp_path):
  config = tiny_pair_config()
  result = train.train(config, str(tmp_path))
  assert result["sizes"] == [(14, 21), (16, 24)]
  for name in ("a_to_b.png", "b_to_a.png", "samples_random.png", "b_samples_random.png", "reconstruction.png"):
    assert name in result["outputs"]
  with Image.open(tmp_path / "a_to_b.png") as image:
    # [A | finest-scale translation | coarse-to-fine translation | B], 16x24 each.
    assert image.size == (4 * 26 + 2, 20)
  records = result["records"]
  assert [r["status"] for r in records] == ["trained", "trained"]
  for record in records:
    assert set(record["noise_amp"]) == {"a", "b"}
    assert np.isfinite(record["cycle_last"]) and record["cycle_last"] >= 0.0
  # Both images get their own reconstruction noise amplitude above the coarsest scale.
  assert records[1]["noise_amp"]["a"] != records[1]["noise_amp"]["b"]

  shutil.rmtree(tmp_path / "checkpoints" / "scale_01")
  rerun = train.train(config, str(tmp_path))["records"]
  assert [(r["scale"], r["status"], r["iterations_trained"]) for r in rerun] == [(0, "restored", 0), (1, "trained", 8)]
  with open(tmp_path / train.SCALE_LOG) as f:
    assert len([json.loads(line) for line in f]) == 4
