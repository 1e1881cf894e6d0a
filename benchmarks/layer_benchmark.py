"""Forward and forward+backward time of each convolution of a DCGAN, one layer at a time.

Where does a train step spend its time? `gan_jax.benchmark` times the whole step;
this module times its convolutions alone, at the step's batch size, so a slow
layer (or a slow formulation of one) shows up by name. The layer list is read off
the same Flax modules the benchmark builds (`benchmark.build_target`), so it
follows the model presets. Each generator up-sampling is timed in the
formulations of `gan_jax.kernels.upsample` ('transpose' and 'subpixel', and
'phase_im2col' where the CPU models take it: 2x2-4x4 inputs); each
discriminator convolution as XLA's strided convolution with XLA's gradient ('xla')
and with the phase-decomposed input gradient of `gan_jax.kernels.downsample`
('phase'); layers on tiny grids also as one matmul ('dense', `dense_conv`) and as
im2col ('im2col'). The formulation the models pick on this backend is marked. Backward means the gradients
of sum(y^2) with respect to both the input and the kernel, as in a train step where
the layer is not the first.

Imports neither TensorFlow nor PyTorch; the PyTorch timings come from
`benchmarks.torch_reference.time_conv_layer`, handed in by the caller.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from benchmarks import step_benchmark as benchmark
from gan_jax.kernels import dense_conv
from gan_jax.kernels import im2col
from gan_jax.kernels import downsample
from gan_jax.kernels import upsample

LAYER_MODELS = ("dcgan_mnist", "dcgan_cifar10", "cgan_mnist", "acgan_mnist", "wgan_gp_mnist")
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution of a DCGAN at batch 1: 'up' (generator) or 'down' (discriminator)."""
  name: str
  direction: str
  in_shape: tuple[int, int, int]  # H, W, C of the input
  features: int
  kernel_size: int
  stride: int

  def as_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "in_shape": list(self.in_shape)}


def conv_layers(model: str) -> list[ConvLayer]:
  """The generator's up-sampling convolutions and the discriminator's strided ones, in order."""
  if model not in LAYER_MODELS:
    raise ValueError(f"Unknown model '{model}' for the layer benchmark; choose one of: {', '.join(LAYER_MODELS)}")
  spec = benchmark.build_target(benchmark.Options(model=model)).spec
  g, d = spec["generator"], spec["discriminator"]
  layers = []
  side, channels = g["stem_size"], g["stem_features"]
  stages = [tuple(s) for s in g["stages"]] + [(g["out_channels"], 2)]
  for i, (features, stride) in enumerate(stages):
    layers.append(ConvLayer(f"G up{i + 1}", "up", (side, side, channels), features, g["kernel_size"], stride))
    side, channels = side * stride, features
  height, width, channels = spec["image_shape"]
  channels += 1 if d["conditioning"] == "concat" else 0  # the label plane
  for i, features in enumerate(d["widths"]):
    layers.append(ConvLayer(f"D conv{i + 1}", "down", (height, width, channels), features, d["kernel_size"], 2))
    height, width, channels = -(-height // 2), -(-width // 2), features
  return layers


def auto_impl(layer: ConvLayer, backend: str | None = None, batch_size: int = 128) -> str:
  """The formulation the models use for this layer at `batch_size` on `backend` (default: this one)."""
  module = downsample if layer.direction == "down" else upsample
  kernel = (layer.kernel_size, layer.kernel_size, layer.in_shape[-1], layer.features)
  return module.auto_impl((batch_size,) + tuple(layer.in_shape), layer.stride, backend or jax.default_backend(), kernel)


def layer_fn(layer: ConvLayer, impl: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """y = layer(x, kernel) in the given formulation ('xla', 'phase', 'transpose', 'subpixel', 'phase_im2col',
  'dense' or 'im2col')."""
  stride = layer.stride
  if layer.direction == "down":
    plain = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                                      dimension_numbers=_DIMENSION_NUMBERS)
  else:
    plain = lambda x, w: upsample.conv_transpose_dilated(x, w, stride)
  if impl == "phase":
    return lambda x, w: downsample.strided_conv(x, w, stride)
  if impl == "subpixel" and stride > 1:
    return lambda x, w: upsample.conv_transpose_subpixel(x, w, stride)
  if impl == "phase_im2col" and stride > 1:
    return lambda x, w: upsample.conv_transpose_phase_im2col(x, w, stride)
  if impl == "dense":
    return lambda x, w: dense_conv.dense_conv(x, w, plain)
  if impl == "im2col" and layer.direction == "down":
    padding = tuple(downsample.same_padding(layer.in_shape[axis], layer.kernel_size, stride) for axis in (0, 1))
    return lambda x, w: im2col.conv(x, w, stride, padding)
  if impl == "im2col":
    return lambda x, w: im2col.conv_transpose(x, w, stride, upsample.same_transpose_padding(layer.kernel_size, stride))
  return plain


def _median_seconds(fn: Callable[[], Any], reps: int) -> float:
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def layer_flops(layer: ConvLayer, batch_size: int) -> float:
  """Multiply-adds x 2 of the forward pass in its cheapest form (no products with inserted zeros)."""
  h, w, c = layer.in_shape
  out_pixels = h * w * layer.stride ** 2 if layer.direction == "up" else -(-h // 2) * -(-w // 2)
  taps = layer.kernel_size ** 2 / (layer.stride ** 2 if layer.direction == "up" else 1)
  return 2.0 * batch_size * out_pixels * taps * c * layer.features


def time_jax_layer(layer: ConvLayer, impl: str, batch_size: int, reps: int, seed: int = 0) -> dict[str, float]:
  """Median seconds of the jitted forward and forward+backward passes on one device."""
  x_key, w_key = jax.random.split(jax.random.PRNGKey(seed))
  k = layer.kernel_size
  x = jax.random.normal(x_key, (batch_size,) + tuple(layer.in_shape), jnp.float32)
  w = 0.05 * jax.random.normal(w_key, (k, k, layer.in_shape[-1], layer.features), jnp.float32)
  fn = layer_fn(layer, impl)
  forward = jax.jit(fn)
  backward = jax.jit(jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), argnums=(0, 1)))
  jax.block_until_ready((forward(x, w), backward(x, w)))  # compile and warm up
  return {"forward_s": _median_seconds(lambda: forward(x, w), reps),
          "forward_backward_s": _median_seconds(lambda: backward(x, w), reps)}


def run(model: str, batch_size: int = 128, reps: int = 10,
        reference: Callable[[dict, int, int], dict] | None = None) -> dict[str, Any]:
  """Times every convolution of `model` in JAX (and the reference, if given).

  Args:
    model: one of LAYER_MODELS.
    batch_size: images per pass (the step's discriminator minibatch).
    reps: timed repetitions after one warm-up; medians are reported.
    reference: `fn(layer_dict, batch_size, reps) -> {'forward_s', 'forward_backward_s'}`,
      e.g. `benchmarks.torch_reference.time_conv_layer`.

  Returns:
    {'model', 'batch_size', 'reps', 'machine', 'layers': [{layer fields, 'flops', 'auto_impl',
    'jax': {impl: times}, 'torch': times}]}.
  """
  if batch_size <= 0 or reps <= 0:
    raise ValueError(f"batch_size and reps must be positive, got {batch_size} and {reps}")
  rows = []
  for layer in conv_layers(model):
    impls = ("xla", "phase") if layer.direction == "down" else (
        ("transpose",) if layer.stride == 1 else ("transpose", "subpixel"))
    in_hw = tuple(layer.in_shape[:2])
    out_hw = tuple(side * layer.stride if layer.direction == "up" else -(-side // layer.stride) for side in in_hw)
    if dense_conv.prefers_dense(in_hw, out_hw, "cpu"):  # the tiny grids where CPU models use them
      impls += ("dense", "im2col")
    if layer.direction == "up" and layer.stride > 1 and auto_impl(layer, "cpu", batch_size) == "phase_im2col":
      impls += ("phase_im2col",)
    row = {**layer.as_dict(), "flops": layer_flops(layer, batch_size),
           "auto_impl": auto_impl(layer, batch_size=batch_size),
           "jax": {impl: time_jax_layer(layer, impl, batch_size, reps) for impl in impls}}
    if reference is not None:
      row["torch"] = reference(layer.as_dict(), batch_size, reps)
    rows.append(row)
  return {"model": model, "batch_size": batch_size, "reps": reps, "machine": benchmark.machine_info(),
          "layers": rows}
