"""Speed of one full train step (D and G updates, optimizer included), JAX only.

Everything here runs on synthetic data already on the device and measures ONE
device, `jax.devices()[0]` (on a CPU host: all cores, through XLA's intra-op
thread pool). Importing this module imports neither TensorFlow nor PyTorch, so
it runs on accelerator machines that have only JAX; the optional PyTorch
reference (`benchmarks.torch_reference`) is handed in by the caller as a function.

Figures (see `run`): compile time, per-step time (median, min, max), images per
second (`IMAGES_PER_SEC_DEFINITION`), FLOPs per step from XLA's cost analysis
(`step_flops`), achieved FLOP/s against a matmul peak measured in the same run and
dtype, XLA's memory figures, and the images per second of the host input pipeline.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import step_targets
from gan_jax import fs
from gan_jax import parallel
from gan_jax.data import device_dataset

IMAGES_PER_SEC_DEFINITION = ("real images consumed per second = batch_size * d_steps * steps_per_call / median call "
                             "time (d_steps = 1 for the classifier, the diffusion model and translation, where an "
                             "image is an (a, b) pair)")
_VERSIONED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")


# The benchmark's models, options and targets (re-exported: they are this module's interface).
MODELS, DTYPES, Options, Target = step_targets.MODELS, step_targets.DTYPES, step_targets.Options, step_targets.Target
validate_options, load_config, build_target = (step_targets.validate_options, step_targets.load_config,
                                               step_targets.build_target)
synthetic_batch = step_targets.synthetic_batch


def scan_steps(step_fn: Callable, steps_per_call: int) -> Callable:
  """`step(state, batch)` over `steps_per_call` stacked batches in one call (a `lax.scan`).

  On a fast accelerator a small GAN step can be shorter than the host's dispatch
  overhead; one call of several steps amortises it (the step folds `state.step`
  into its key, so the randomness equals that of single calls). Metrics are the last step's.
  """
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")

  def multi_step(state, batches):
    leading = {x.shape[0] for x in jax.tree.leaves(batches)}
    if leading != {steps_per_call}:
      raise ValueError(f"batch leading axes {sorted(leading)} must all equal steps_per_call={steps_per_call}")
    state, stacked = jax.lax.scan(step_fn, state, batches)
    return state, jax.tree.map(lambda m: m[-1], stacked)

  return multi_step


def param_count(state) -> int:
  """Trainable parameters of a train state (arrays or ShapeDtypeStructs); a diffusion EMA copy is not counted."""
  trees = (state.g_params, state.d_params) if hasattr(state, "g_params") else (state.params,)
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(trees)))


def jax_param_count(opts: Options) -> int:
  """Parameter count of `opts.model` without running or compiling anything."""
  target = build_target(opts)
  return param_count(jax.eval_shape(target.init_fn, jax.random.PRNGKey(0)))


def summarize(times: list[float]) -> dict[str, float]:
  return {"median": statistics.median(times), "min": min(times), "max": max(times), "mean": statistics.fmean(times)}


def timed_calls(call: Callable, state, batch, num_calls: int) -> tuple[Any, list[float]]:
  """Runs `state, metrics = call(state, batch)` num_calls times; seconds of each, blocked to completion."""
  times = []
  for _ in range(num_calls):
    start = time.perf_counter()
    state, metrics = call(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  return state, times


def cost_flops(compiled) -> float | None:
  """FLOPs from `compiled.cost_analysis()` (a dict, a one-element list, or None), or None."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # backends may not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def step_flops(step_fn: Callable, state, batch) -> float | None:
  """FLOPs of one step: XLA's cost analysis of its HLO as lowered for the host CPU.

  Why not the compiled module's count (also reported): XLA counts a while-loop body
  once whatever its trip count (the steps of a multi-step call), and after
  compilation for GPU, convolutions are cuDNN custom calls that it counts as 0 FLOPs. Lowered HLO is the same program on every
  platform; lowering it for the CPU makes the analysis available everywhere (GPU
  backends do not analyse unoptimised HLO). On CPU the counts agree within ~3%.
  """
  try:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  except RuntimeError:  # no CPU backend (JAX_PLATFORMS excludes it): analyse for the default one
    sharding = None
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), (state, batch))
  return cost_flops(jax.jit(step_fn).lower(*abstract))


def mean_step_flops(target: Target, state, batch) -> tuple[float | None, list[dict] | None]:
  """FLOPs of the mean step, and the weighted counts it was made of (None for a uniform step)."""
  if not target.flops_parts:
    return step_flops(target.step_fn, state, batch), None
  parts = [{"flops": step_flops(fn, state, batch), "weight": weight} for fn, weight in target.flops_parts]
  if any(part["flops"] is None for part in parts):
    return None, parts
  return sum(part["flops"] * part["weight"] for part in parts), parts


def peak_matmul(dtype: Any, size: int, device: jax.Device, reps: int = 5) -> dict[str, float]:
  """FLOP/s of a size x size matmul in `dtype`, compiled and timed like the step (median of reps)."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  a = jax.device_put(jax.random.normal(k1, (size, size), dtype), device)
  b = jax.device_put(jax.random.normal(k2, (size, size), dtype), device)
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  matmul(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  # The step's convolutions run at the same default precision (TF32 for float32 on NVIDIA GPUs).
  precision = jax.config.jax_default_matmul_precision or "default"
  return {"peak_flops_per_sec": 2.0 * size**3 / median, "peak_matmul_size": size, "peak_matmul_time_s": median,
          "peak_matmul_precision": precision}


def memory_figures(compiled, device: jax.Device) -> dict[str, int | None]:
  """XLA's static buffer sizes of the compiled step, and the device allocator's peak (None on CPU)."""
  figures: dict[str, int | None] = {}
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    stats = None
  names = ("argument", "output", "alias", "temp", "generated_code")
  for name in names:
    value = getattr(stats, f"{name}_size_in_bytes", None) if stats is not None else None
    figures[f"{name}_bytes"] = int(value) if value is not None else None
  if stats is not None:
    # Inputs + outputs + scratch live at once; donated (aliased) buffers are counted once.
    figures["compiled_peak_bytes"] = (figures["argument_bytes"] + figures["output_bytes"] + figures["temp_bytes"]
                                      - figures["alias_bytes"])
  else:
    figures["compiled_peak_bytes"] = None
  try:
    device_stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    device_stats = None
  figures["device_peak_bytes_in_use"] = (device_stats or {}).get("peak_bytes_in_use")
  return figures


def data_images_per_sec(spec: dict, num_examples: int, num_batches: int, device: jax.Device) -> float:
  """Images per second of the training loop's input path alone (`DeviceDataset`), synthetic uint8 data.

  Per step the loop computes the batch's row indices on the host, ships them and
  gathers + scales the rows on the device; each timed batch is blocked on. A translation
  model's (a, b) rows are gathered as one image of both domains' channels (pix2pix's path).
  """
  rng = np.random.default_rng(spec["seed"])
  num_examples = max(num_examples, spec["batch_size"])
  shape = list(spec["image_shape"])
  if spec.get("inputs"):
    shape[-1] = sum(s[-1] for s in spec["inputs"].values())
  raw = rng.integers(0, 256, (num_examples,) + tuple(shape), dtype=np.uint8)
  labels = rng.integers(0, max(spec["num_classes"], 1), num_examples).astype(np.int32)
  mesh = parallel.make_mesh([device])
  dataset = device_dataset.DeviceDataset(raw, labels, mesh, spec["output_range"])
  d_steps, batch_size, seed = spec["d_steps"], spec["batch_size"], spec["seed"]
  jax.block_until_ready(dataset.batches(range(d_steps), batch_size, seed))  # compile, warm caches
  start = time.perf_counter()
  for step in range(num_batches):
    jax.block_until_ready(dataset.batches(range(step * d_steps, (step + 1) * d_steps), batch_size, seed))
  return num_batches * batch_size * d_steps / (time.perf_counter() - start)


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)  # reads metadata: never imports torch
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_threads() -> int:
  """CPUs this process may run on; XLA's CPU client sizes its intra-op thread pool from it."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pin_threads(threads: int) -> int:
  """Restricts the process to `threads` CPUs (0: leave as is); returns the CPUs it may use.

  Call before JAX's backend starts, so XLA and the PyTorch reference use the same count.
  """
  if threads and hasattr(os, "sched_setaffinity") and threads < cpu_threads():
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
  return cpu_threads()


def machine_info() -> dict[str, Any]:
  device = jax.devices()[0]
  return {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_threads_available": cpu_threads(),
          "device_kind": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
          "devices_measured": 1, "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "python": platform.python_version(), "os": platform.platform(),
          "versions": {p: _version(p) for p in _VERSIONED_PACKAGES}}


def _measure_jax(opts: Options, target: Target) -> dict[str, Any]:
  """Compiles and times the step on one device (the donated state is threaded through the calls)."""
  k = opts.steps_per_call
  device = jax.devices()[0]
  mesh = parallel.make_mesh([device])
  step_fn = target.step_fn if k == 1 else scan_steps(target.step_fn, k)
  lead = target.batch_lead if k == 1 else (k,) + target.batch_lead
  batch_axis = len(lead) - 1
  jitted = parallel.data_parallel_jit(step_fn, mesh, batch_axis=batch_axis, donate_state=opts.donate)
  init = jax.jit(target.init_fn, out_shardings=parallel.replicated(mesh)).lower(jax.random.PRNGKey(opts.seed))
  state = init.compile(compiler_options=opts.compiler_options)(jax.random.PRNGKey(opts.seed))
  batch = jax.device_put(synthetic_batch(target.spec, lead, opts.seed), parallel.batch_sharding(mesh, batch_axis))
  start = time.perf_counter()
  lowered = jitted.lower(state, batch)
  lowered_at = time.perf_counter()
  compiled = lowered.compile(compiler_options=opts.compiler_options)
  compile_s = time.perf_counter() - start
  state, _ = timed_calls(compiled, state, batch, opts.warmup)
  state, call_times = timed_calls(compiled, state, batch, opts.steps)
  call = summarize(call_times)
  step = {name: value / k for name, value in call.items()}
  images_per_call = math.prod(target.batch_lead) * k
  one_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:] if k > 1 else x.shape, x.dtype), batch)
  if k == 1 and not target.flops_parts and device.platform == "cpu":
    # The timed step's lowering is the CPU lowering that step_flops would trace again: the same count
    # to a few FLOPs in 10^7 (scalar bookkeeping of the 1-device sharding), one trace fewer.
    flops, flops_parts = cost_flops(lowered), None
  else:
    flops, flops_parts = mean_step_flops(target, state, one_batch)
  interval = None
  if target.flops_parts and k == 1 and opts.time_parts:
    state, interval = _time_parts(target, opts, compiled, state, batch, call_times)
  figures = {
      "compile_time_s": compile_s, "lower_time_s": lowered_at - start, "timed_steps": opts.steps,
      "warmup_steps": opts.warmup, "step_time_median_s": step["median"], "step_time_min_s": step["min"],
      "step_time_max_s": step["max"], "step_time_mean_s": step["mean"], "call_time_median_s": call["median"],
      "images_per_step": math.prod(target.batch_lead), "images_per_sec": images_per_call / call["median"],
      "flops_per_step": flops, "flops_per_step_parts": flops_parts,
      "xla_flops_per_call_compiled": cost_flops(compiled),
      "flops_source": "XLA cost analysis of the step's lowered HLO (see step_benchmark.step_flops)",
      "achieved_flops_per_sec": flops / step["median"] if flops else None,
      "memory": memory_figures(compiled, device), "param_count": param_count(state),
      # Lazily regularised steps (R1 on one step in r1_interval): the step medians above are of
      # steps without it; training runs at this weighted mean of each kind's median.
      "step_time_parts_median_s": interval and interval["parts"],
      "step_time_interval_mean_s": interval and interval["mean"],
  }
  return figures


def _fires_r1(step: int, d_steps: int, interval: int) -> bool:
  """Whether lazy R1 runs in train step `step` (on discriminator update step * d_steps + k, as gan_step)."""
  return any((step * d_steps + k) % interval == 0 for k in range(d_steps))


def _time_parts(target: Target, opts: Options, compiled, state, batch,
                call_times: list[float]) -> tuple[Any, dict | None]:
  """The step's usual and R1 calls timed apart: ({'parts': [usual s, R1 s], 'mean': weighted s}).

  Both come from the compiled step itself, so R1 runs inside its `lax.cond` as in training: the
  usual median from the main timing's calls that did not fire R1 (calls of step warmup, warmup + 1,
  ...), the R1 median from calls with the step counter set to multiples of the interval.
  """
  d_steps, interval = target.spec["d_steps"], target.spec["r1_interval"]
  usual = [t for i, t in enumerate(call_times) if not _fires_r1(opts.warmup + i, d_steps, interval)]
  r1_times = []
  for i in range(max(3, opts.steps // 2) + 1):  # the first call is untimed
    state = state.replace(step=jnp.full_like(state.step, (i + 1) * interval))
    state, times = timed_calls(compiled, state, batch, 1)
    r1_times += times if i else []
  if not usual:  # every step runs R1 (d_steps >= interval)
    return state, None
  medians = [summarize(usual)["median"], summarize(r1_times)["median"]]
  mean = sum(weight * t for (_, weight), t in zip(target.flops_parts, medians))
  return state, {"parts": medians, "mean": mean}


def torch_comparison(result: dict, reference: Callable[[dict], dict]) -> dict:
  """Runs the reference on the same spec; adds FLOP/s (XLA's count) and JAX speed-ups."""
  spec = {**result["spec"], "threads": result["threads"], "platform": result["machine"]["platform"]}
  torch_result = reference(spec)
  speedups = {}
  for mode in ("eager", "compiled"):
    figures = torch_result.get(mode) or {}
    if figures.get("step_time_median_s"):
      flops = result["flops_per_step"]
      figures["achieved_flops_per_sec"] = flops / figures["step_time_median_s"] if flops else None
      # > 1: JAX is faster. Per-step times, so --steps_per_call is accounted for.
      speedups[mode] = figures["step_time_median_s"] / result["step_time_median_s"]
    else:
      speedups[mode] = None
  if result.get("step_time_interval_mean_s"):
    _torch_interval_mean(result, spec, reference, torch_result, speedups)
  torch_result["param_count_matches_jax"] = torch_result.get("param_count") == result["param_count"]
  result["torch"] = torch_result
  result["jax_speedup_vs_torch"] = speedups
  return result


def _torch_interval_mean(result: dict, spec: dict, reference: Callable[[dict], dict], torch_result: dict,
                         speedups: dict) -> None:
  """The reference's usual step and its step that always runs R1, weighted as the JAX parts; JAX's speed-up on that mean."""
  interval = spec["r1_interval"]
  always_r1 = reference({**spec, "r1_interval": 1})
  for mode in ("eager", "compiled"):
    figures = torch_result.get(mode) or {}
    medians = [figures.get("step_time_median_s"), (always_r1.get(mode) or {}).get("step_time_median_s")]
    if all(medians) and figures:
      figures["step_time_parts_median_s"] = medians
      figures["step_time_interval_mean_s"] = medians[0] * (1 - 1 / interval) + medians[1] / interval
      speedups[f"{mode}_interval_mean"] = figures["step_time_interval_mean_s"] / result["step_time_interval_mean_s"]


def run(opts: Options, reference: Callable[[dict], dict] | None = None) -> dict[str, Any]:
  """Measures `opts.model`; with `reference`, also its PyTorch mirror (see benchmarks/torch_reference.py).

  Returns:
    A JSON-able dict: settings, machine, JAX figures, memory, input pipeline and,
    with a reference, 'torch' and 'jax_speedup_vs_torch' (torch step time / JAX step time).
  """
  target = build_target(opts)
  figures = _measure_jax(opts, target)
  spec = target.spec
  device = jax.devices()[0]
  peak_size = opts.peak_size or (2048 if device.platform == "cpu" else 8192)
  peak = peak_matmul(DTYPES[spec["compute_dtype"]], peak_size, device)
  achieved = figures["achieved_flops_per_sec"]
  loading = data_images_per_sec(spec, opts.data_examples, opts.data_batches, device)
  result = {
      "model": opts.model, "options": dataclasses.asdict(opts), "spec": spec,
      "batch_size": opts.batch_size, "d_steps": spec["d_steps"], "steps_per_call": opts.steps_per_call,
      "reuse_fakes": opts.reuse_fakes, "dtype": spec["compute_dtype"],
      "upsample_impl": spec.get("upsample_impl", "n/a"), "donate": opts.donate,
      "threads": opts.threads or os.cpu_count(), "xla_cpu_threads": cpu_threads(),
      "images_per_sec_definition": IMAGES_PER_SEC_DEFINITION, **figures, **peak,
      "fraction_of_peak": achieved / peak["peak_flops_per_sec"] if achieved else None,
      "data_images_per_sec": loading, "data_to_train_ratio": loading / figures["images_per_sec"],
      "machine": machine_info(), "torch": None, "jax_speedup_vs_torch": None,
  }
  result["data_meets_10x_target"] = result["data_to_train_ratio"] >= 10.0
  return torch_comparison(result, reference) if reference is not None else result


def _jsonable(value):
  if isinstance(value, (np.generic,)):
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(result: dict, path: str) -> None:
  """The result as JSON, written atomically (a local path or a URL)."""
  fs.write_text(path, json.dumps(result, indent=2, default=_jsonable))
