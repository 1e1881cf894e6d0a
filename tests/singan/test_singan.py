"""SinGAN: pyramid sizes, the patch-critic gradient penalty, fully convolutional networks,
and the entrypoint end to end (outputs, per-scale checkpoints, resume, bad input)."""
import functools
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gan_jax.models import singan as models
from gan_jax.singan import pyramid
from gan_jax.singan import scale_step
from gan_jax.singan import train


REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE_PNGS = ["real_pyramid.png", "samples_random.png", "samples_wide.png", "reconstruction.png",
              "super_resolution.png", "samples_from_scale_01.png"] + [f"samples_scale_{n:02d}.png" for n in range(3)]


@pytest.mark.parametrize("height, width, min_size, max_size, expected", [
    # chelsea (300x451) with the defaults: shrunk to 167x250, 8 scales.
    (300, 451, 25, 250, [(25, 38), (33, 50), (44, 65), (57, 85), (75, 111), (98, 146), (128, 191), (167, 250)]),
    # the :smoke config on chelsea.
    (300, 451, 16, 32, [(16, 24), (19, 28), (22, 32)]),
    # portrait, shrunk to 250x125: num_scales 9, 2 skipped, stop 7.
    (400, 200, 25, 250, [(50, 25), (63, 32), (80, 40), (100, 50), (126, 63), (158, 79), (199, 100), (250, 125)]),
    # already within max_size: the official rule gives ceil(log(25/100)/log(.75)) + 2 = 7 scales.
    (100, 100, 25, 250, [(25, 25), (32, 32), (40, 40), (50, 50), (63, 63), (80, 80), (100, 100)]),
])
def test_pyramid_sizes_follow_the_official_singan_rule(height, width, min_size, max_size, expected):
  sizes, factor = pyramid.pyramid_sizes(height, width, min_size, max_size, 0.75)
  assert sizes == expected
  stop = len(sizes) - 1
  assert factor == pytest.approx((min_size / min(sizes[-1])) ** (1 / stop))
  assert factor >= 0.75
  assert min(sizes[0]) == min_size
  scale1 = min(max_size / max(height, width), 1.0)
  assert sizes[-1] == (math.ceil(height * scale1 - 1e-6), math.ceil(width * scale1 - 1e-6))


def test_pyramid_rejects_an_image_smaller_than_min_size():
  with pytest.raises(ValueError, match="min_size"):
    pyramid.pyramid_sizes(20, 30, 25, 250)


def test_real_pyramid_has_every_size_and_value_range():
  image = pyramid.load_image("skimage:chelsea")
  assert image.shape == (300, 451, 3) and image.min() >= -1.0 and image.max() <= 1.0
  sizes = [(16, 24), (19, 28), (22, 32)]
  reals = pyramid.build_pyramid(image, sizes)
  assert [r.shape for r in reals] == [(1, h, w, 3) for h, w in sizes]
  # The coarsest level is a blurred copy, so its mean colour stays close to the image's.
  np.testing.assert_allclose(np.mean(np.asarray(reals[0]), axis=(0, 1, 2)), image.mean(axis=(0, 1)), atol=0.05)


def test_penalty_of_a_linear_patch_critic_is_known_in_closed_form():
  # A conv-free linear critic scores each pixel as <w, x>; the gradient of the summed map is w
  # at every pixel, so SinGAN's per-pixel penalty is (|w| - 1)^2 whatever the images.
  w = jnp.array([0.3, -1.2, 0.5])
  score_map = lambda x: jnp.sum(x * w, axis=-1, keepdims=True)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  real = jax.random.normal(keys[0], (2, 9, 13, 3))
  fake = jax.random.normal(keys[1], (2, 9, 13, 3))
  penalty = scale_step.critic_penalty(score_map, real, fake, keys[2])
  np.testing.assert_allclose(penalty, (jnp.linalg.norm(w) - 1.0) ** 2, rtol=1e-5)
  # A critic with unit-norm slope is not penalised.
  unit = lambda x: jnp.sum(x * (w / jnp.linalg.norm(w)), axis=-1, keepdims=True)
  assert float(scale_step.critic_penalty(unit, real, fake, keys[2])) < 1e-8


def test_networks_are_fully_convolutional():
  key_g, key_d, key_x = jax.random.split(jax.random.PRNGKey(1), 3)
  small = jnp.zeros((1, 25, 25, 3))
  generator, critic = models.SinGenerator(features=8), models.PatchCritic(features=8, conv_impl="im2col")
  # jit: one compilation per function is cheaper than op-by-op dispatch on a CPU.
  g_vars = jax.jit(generator.init)(key_g, small, small)
  d_vars = jax.jit(critic.init)(key_d, small)
  large = jax.random.normal(key_x, (2, 40, 60, 3))
  out = jax.jit(functools.partial(generator.apply, train=False))(g_vars, large, large)
  assert out.shape == (2, 40, 60, 3)
  out_train, _ = jax.jit(functools.partial(generator.apply, train=True, mutable=["batch_stats"]))(g_vars, large,
                                                                                                 large)
  assert out_train.shape == (2, 40, 60, 3)
  # Residual: the output differs from the upsampled input by at most tanh's range.
  assert float(jnp.max(jnp.abs(out - large))) <= 1.0
  assert jax.jit(critic.apply)(d_vars, large).shape == (2, 30, 50, 1)


def test_im2col_convolution_matches_xla_values_and_gradients():
  keys = jax.random.split(jax.random.PRNGKey(2), 2)
  x = jax.random.normal(keys[0], (2, 9, 12, 5))
  kernel = jax.random.normal(keys[1], (3, 3, 5, 4))
  xla = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(models.im2col_conv(x, kernel), xla(x, kernel), atol=1e-4)
  loss = lambda conv: lambda x, k: jnp.sum(jnp.sin(conv(x, k)))
  for got, want in zip(jax.grad(loss(models.im2col_conv), (0, 1))(x, kernel), jax.grad(loss(xla), (0, 1))(x, kernel)):
    np.testing.assert_allclose(got, want, atol=1e-4)
  # Same parameters whichever way the model computes.
  small = jnp.zeros((1, 25, 25, 3))
  variables = models.SinGenerator(8, conv_impl="xla").init(jax.random.PRNGKey(0), small, small)
  outs = [jax.jit(functools.partial(models.SinGenerator(8, conv_impl=impl).apply, train=False))(variables, x3, x3)
          for impl in ("xla", "im2col") for x3 in [jax.random.normal(keys[0], (1, 30, 40, 3))]]
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
  assert models.resolve_conv_impl("auto", "cpu") == "im2col" and models.resolve_conv_impl("auto", "gpu") == "xla"
  with pytest.raises(ValueError, match="conv_impl"):
    models.resolve_conv_impl("fft", "cpu")


def test_filters_double_every_four_scales_up_to_128():
  assert [models.features_at_scale(n) for n in range(10)] == [32] * 4 + [64] * 4 + [128] * 2


def test_non_image_paths_are_rejected_naming_the_path(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  with pytest.raises(ValueError, match="notes.png"):
    pyramid.load_image(str(text))
  with pytest.raises(ValueError, match="missing.jpg"):
    pyramid.load_image(str(tmp_path / "missing.jpg"))
  with pytest.raises(ValueError, match="skimage:nope"):
    pyramid.load_image("skimage:nope")


def _run_singan(*flags, timeout=300):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = os.environ["GAN_JAX_TEST_COMPILE_FLAGS"]  # one CPU device in the child
  return subprocess.run([sys.executable, "-m", "experiments.singan",
                         "--config=experiments/configs/singan.py:smoke", *flags],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _records(workdir):
  with open(workdir / train.SCALE_LOG) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("singan_smoke")
  proc = _run_singan(f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_smoke_entrypoint_writes_every_png(smoke_run):
  for name in SMOKE_PNGS:
    with Image.open(smoke_run / name) as image:
      assert image.size[0] > 20, name
  with Image.open(smoke_run / "samples_wide.png") as wide, Image.open(smoke_run / "samples_random.png") as grid:
    # 4 samples in a 1x4 grid of 22x32 images; the wide ones are 64 pixels wide.
    assert grid.size == (4 * 34 + 2, 24 + 2)
    assert wide.size == (64 + 4, 22 + 4)


@pytest.mark.slow
def test_smoke_training_lowers_the_reconstruction_loss(smoke_run):
  records = _records(smoke_run)
  assert [r["scale"] for r in records] == [0, 1, 2]
  assert all(r["status"] == "trained" and r["iterations_trained"] == 24 for r in records)
  coarsest = records[0]
  assert coarsest["rec_last"] < 0.8 * coarsest["rec_first"], coarsest
  assert coarsest["noise_amp"]["a"] == 1.0
  assert 0.0 < records[1]["noise_amp"]["a"] < 0.1  # 0.1 x RMSE of images in [-1, 1]


@pytest.mark.slow
def test_rerun_restores_finished_scales_instead_of_training_them(smoke_run):
  for n in range(3):
    assert sorted(os.listdir(smoke_run / "checkpoints" / f"scale_{n:02d}")) == ["24", train.SCALE_MARKER]
  before = (smoke_run / "checkpoints" / "scale_00" / "24").stat().st_mtime
  proc = _run_singan(f"--workdir={smoke_run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rerun = _records(smoke_run)[3:]
  assert [(r["scale"], r["status"], r["iterations_trained"]) for r in rerun] == [
      (0, "restored", 0), (1, "restored", 0), (2, "restored", 0)]
  assert all("seconds" not in r for r in rerun)  # no training chunk ran
  assert (smoke_run / "checkpoints" / "scale_00" / "24").stat().st_mtime == before


def test_entrypoint_rejects_a_non_image_in_one_line(tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_text("hello")
  proc = _run_singan(f"--workdir={tmp_path / 'run'}", f"--config.image={bad}")
  assert proc.returncode == 2
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and str(bad) in errors[0], proc.stderr[-2000:]
  assert not (tmp_path / "run").exists()
