"""Images from a trained GAN without training: the library and the `experiments.sample` entrypoint."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments.configs import variants
from gan_jax import fs
from gan_jax import sampling
from gan_jax.data import splits
from gan_jax.train import gan_loop


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory, idx_dir):
  workdir = str(tmp_path_factory.mktemp("cgan"))
  gan_loop.train_gan(variants.load("cgan_mnist", "smoke"), workdir, idx_dir=str(idx_dir))
  return workdir


def test_png_folder_per_class_deterministic_and_readable_as_a_data_set(cgan_run, tmp_path):
  generator = sampling.load(cgan_run)
  assert generator.conditional and generator.classes == tuple(range(10))
  assert splits.read_class_names(cgan_run) == generator.class_names
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  for out in (first, second):
    summary = sampling.export(generator, out, num_per_class=3, classes=(7, 8), seed=1)
  assert summary["written"] == {"7": 3, "8": 3} and sorted(os.listdir(first)) == ["7", "8"]
  for name in ("7/00000.png", "8/00002.png"):
    assert fs.read_bytes(os.path.join(first, name)) == fs.read_bytes(os.path.join(second, name))
    assert Image.open(os.path.join(first, name)).size == (28, 28)
  # Another seed and a truncated latent draw give other images.
  sampling.export(generator, str(tmp_path / "c"), num_per_class=3, classes=(7,), seed=2)
  sampling.export(generator, str(tmp_path / "d"), num_per_class=3, classes=(7,), seed=1, truncation=0.5)
  reference = np.asarray(Image.open(os.path.join(first, "7", "00000.png")))
  for other in ("c", "d"):
    assert not np.array_equal(reference, np.asarray(Image.open(tmp_path / other / "7" / "00000.png")))


def test_filter_keeps_only_images_it_is_confident_about(cgan_run, tmp_path):
  generator = sampling.load(cgan_run)
  # A "classifier" whose confidence is the mean pixel: the threshold splits the draws.
  confidence = lambda images, c: images.reshape(len(images), -1).mean(-1) / 255.0
  plain = sampling.export(generator, str(tmp_path / "plain.npz"), num_per_class=8, classes=(3,), fmt="npz")
  threshold = float(np.median(confidence(np.load(tmp_path / "plain.npz")["image"], 3)))
  summary = sampling.export(generator, str(tmp_path / "kept.npz"), num_per_class=8, classes=(3,), fmt="npz",
                            confidence=confidence, threshold=threshold)
  kept = np.load(tmp_path / "kept.npz")["image"]
  assert plain["acceptance_rate"] is None and 0 < summary["acceptance_rate"][0] < 1
  assert len(kept) == 8 and np.mean(confidence(kept, 3) >= threshold) > 0.5


def test_bad_runs_and_classes_are_one_line_errors(cgan_run, tmp_path):
  with pytest.raises(sampling.SampleError, match="no config.json"):
    sampling.load(str(tmp_path))
  untrained = tmp_path / "untrained"
  os.makedirs(untrained / "checkpoints")
  (untrained / "config.json").write_text(fs.read_text(os.path.join(cgan_run, "config.json")))
  with pytest.raises(sampling.SampleError, match="has no checkpoint"):
    sampling.load(str(untrained))
  (untrained / "config.json").write_text('{"model": "classifier"}')
  with pytest.raises(sampling.SampleError, match="'classifier' run, which cannot generate images; sample supports"):
    sampling.load(str(untrained))
  with pytest.raises(sampling.SampleError, match="class 12 is not one of cgan's classes 0..9"):
    sampling.parse_classes("3,12", sampling.load(cgan_run))


def test_entrypoint_writes_the_folder_and_refuses_an_untrained_run(cgan_run, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["GAN_JAX_TEST_COMPILE_FLAGS"]}
  command = [sys.executable, "-m", "experiments.sample", f"--workdir={cgan_run}", "--num_per_class=2",
             "--classes=4"]
  ok = subprocess.run(command + [f"--out={tmp_path / 'out'}"], cwd=REPO_ROOT, env=env, capture_output=True,
                      text=True, timeout=180)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert "wrote 2 images of cgan" in ok.stdout and sorted(os.listdir(tmp_path / "out" / "4")) == [
      "00000.png", "00001.png"]
  bad = subprocess.run([sys.executable, "-m", "experiments.sample", f"--workdir={tmp_path}", f"--out={tmp_path / 'x'}"],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ") and "config.json" in bad.stderr
