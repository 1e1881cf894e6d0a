"""The per-layer convolution benchmark: layer plans read off the models, formulations, entrypoint."""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import layer_benchmark

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plan(model):
  return [(l.name, l.in_shape, l.features, l.kernel_size, l.stride) for l in layer_benchmark.conv_layers(model)]


def test_layer_plans_follow_the_model_presets():
  assert _plan("dcgan_mnist") == [
      ("G up1", (7, 7, 256), 128, 5, 1), ("G up2", (7, 7, 128), 64, 5, 2), ("G up3", (14, 14, 64), 1, 5, 2),
      ("D conv1", (28, 28, 1), 64, 5, 2), ("D conv2", (14, 14, 64), 128, 5, 2)]
  assert _plan("dcgan_cifar10") == [
      ("G up1", (2, 2, 512), 256, 4, 2), ("G up2", (4, 4, 256), 128, 4, 2), ("G up3", (8, 8, 128), 64, 4, 2),
      ("G up4", (16, 16, 64), 3, 4, 2), ("D conv1", (32, 32, 3), 64, 4, 2), ("D conv2", (16, 16, 64), 128, 4, 2),
      ("D conv3", (8, 8, 128), 256, 4, 2), ("D conv4", (4, 4, 256), 512, 4, 2)]
  # The concat-conditioned cGAN discriminator sees the label plane as a second channel.
  assert _plan("cgan_mnist")[3][1] == (28, 28, 2)
  with pytest.raises(ValueError, match="Unknown model 'biggan'.*dcgan_mnist"):
    layer_benchmark.conv_layers("biggan")


def test_auto_impl_matches_the_upsampling_rule():
  layers = {l.name: l for l in layer_benchmark.conv_layers("dcgan_cifar10")}
  assert jax.default_backend() == "cpu"
  assert layer_benchmark.auto_impl(layers["G up1"]) == "phase_im2col"  # 2x2 input, on CPU
  # 4x4 -> 2x2 on CPU: im2col up to [reals; fakes] at batch 128 (the dense matrix 2x the patches), then dense.
  assert layer_benchmark.auto_impl(layers["D conv4"]) == "im2col"
  assert layer_benchmark.auto_impl(layers["D conv4"], batch_size=512) == "dense"
  assert layer_benchmark.auto_impl(layers["G up2"]) == "phase_im2col"  # 4x4 input
  assert layer_benchmark.auto_impl(layers["G up2"], backend="gpu") == "subpixel"
  assert layer_benchmark.auto_impl(layers["G up3"]) == "subpixel"  # 8x8 input
  assert layer_benchmark.auto_impl(layer_benchmark.conv_layers("dcgan_mnist")[0]) == "transpose"  # stride 1
  assert layer_benchmark.auto_impl(layers["D conv2"]) == "phase"  # 16x16 -> 8x8
  assert layer_benchmark.auto_impl(layers["D conv3"]) == "xla"  # 8x8 -> 4x4


@pytest.mark.parametrize("name", ["G up2", "G up3"])
def test_every_upsampling_formulation_computes_the_same_layer(name):
  layer = {l.name: l for l in layer_benchmark.conv_layers("dcgan_mnist")}[name]
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + layer.in_shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (5, 5, layer.in_shape[-1], layer.features)) * 0.05
  dilated = layer_benchmark.layer_fn(layer, "transpose")(x, w)
  for impl in ("subpixel", "phase_im2col"):
    np.testing.assert_allclose(layer_benchmark.layer_fn(layer, impl)(x, w), dilated, rtol=1e-4, atol=1e-4)
  assert dilated.shape == (2, 2 * layer.in_shape[0], 2 * layer.in_shape[1], layer.features)


def test_both_discriminator_formulations_compute_the_same_layer():
  layer = {l.name: l for l in layer_benchmark.conv_layers("dcgan_mnist")}["D conv2"]
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + layer.in_shape)
  w = jax.random.normal(jax.random.PRNGKey(1), (5, 5, layer.in_shape[-1], layer.features)) * 0.05
  grad = lambda impl: jax.grad(lambda x: jax.numpy.sum(layer_benchmark.layer_fn(layer, impl)(x, w) ** 2))(x)
  np.testing.assert_allclose(layer_benchmark.layer_fn(layer, "phase")(x, w),
                             layer_benchmark.layer_fn(layer, "xla")(x, w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad("phase"), grad("xla"), rtol=1e-4, atol=1e-4)


def test_layer_flops_count_only_real_multiply_adds():
  up2, _, d1, d2 = [l for l in layer_benchmark.conv_layers("dcgan_mnist")][1:]
  assert layer_benchmark.layer_flops(d2, 1) == 2 * 7 * 7 * 25 * 64 * 128
  assert layer_benchmark.layer_flops(d1, 3) == 3 * 2 * 14 * 14 * 25 * 1 * 64
  # A stride-2 transposed convolution applies k*k/4 taps per output pixel on average.
  assert layer_benchmark.layer_flops(up2, 1) == 2 * 14 * 14 * 25 / 4 * 128 * 64


def test_entrypoint_times_every_layer_next_to_torch(tmp_path):
  pytest.importorskip("torch")
  out = tmp_path / "layers.json"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["GAN_JAX_TEST_COMPILE_FLAGS"]}
  proc = subprocess.run([sys.executable, "-m", "experiments.layer_benchmark", "--model=dcgan_mnist",
                         "--batch_size=2", "--reps=1", "--reference=torch", f"--json={out}"],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  assert [row["name"] for row in result["layers"]] == [name for name, *_ in _plan("dcgan_mnist")]
  for row in result["layers"]:
    expected = {"xla", "phase"} if row["direction"] == "down" else (
        {"transpose"} if row["stride"] == 1 else {"transpose", "subpixel"})
    assert set(row["jax"]) == expected and row["auto_impl"] in expected
    timings = [*row["jax"].values(), row["torch"]]
    assert all(math.isfinite(t[k]) and t[k] > 0 for t in timings for k in ("forward_s", "forward_backward_s"))
  assert "G up2" in proc.stdout and "subpixel*" in proc.stdout
  bad = subprocess.run([sys.executable, "-m", "experiments.layer_benchmark", "--model=biggan"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith("error: Unknown model 'biggan'")
