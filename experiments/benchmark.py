r"""Benchmarks one full train step (D and G updates, optimizer included) on one device.

  python -m experiments.benchmark --model=dcgan_mnist --batch_size=128 [--steps=50] \
      [--reference=torch] [--json=out.json] [--dtype=bfloat16] [--steps_per_call=4] \
      [--upsample_impl=transpose] [--nodonate] [--threads=2] [--width=64]

Models: mlp_gan_mnist, dcgan_mnist, dcgan_cifar10, cgan_mnist, acgan_mnist,
wgan_gp_mnist (each GAN family's training recipe) and classifier.
Synthetic data lives on the device; see benchmarks/step_benchmark.py for what is measured.
--threads pins the process to that many CPUs before JAX starts, so XLA's CPU
thread pool and torch.set_num_threads use the same count.
"""
import functools
import os

from absl import flags

from experiments import common
from benchmarks import step_benchmark as benchmark

_MODEL = flags.DEFINE_string("model", None, f"Required. One of: {', '.join(benchmark.MODELS)}.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Examples per discriminator minibatch.")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps (calls) after the warm-up; use >= 20 for steady state.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed calls after compilation.")
_DTYPE = flags.DEFINE_string("dtype", "float32", f"Compute dtype: {', '.join(benchmark.DTYPES)} (params stay f32).")
_UPSAMPLE = flags.DEFINE_string("upsample_impl", "", "Generator up-sampling: auto, transpose, subpixel, dense, im2col, "
                                "phase_im2col ('' = config).")
_WIDTH = flags.DEFINE_integer("width", 0, "Base width of the GAN (0 = config).")
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 1, "Train steps per jitted call (a lax.scan over "
                                       "stacked batches; amortises dispatch on fast accelerators).")
_REUSE_FAKES = flags.DEFINE_bool("reuse_fakes", False, "G's update reuses the last D update's fakes (JAX and "
                                 "PyTorch alike): one G forward pass per step.")
_DONATE = flags.DEFINE_bool("donate", True, "Donate the train state to the step.")
_THREADS = flags.DEFINE_integer("threads", 0, "CPU threads for XLA and PyTorch (0 = os.cpu_count()).")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 0, "Side of the peak-FLOP/s matmul (0: 2048 CPU, 8192 else).")
_DATA_BATCHES = flags.DEFINE_integer("data_batches", 50, "Batches timed for the input-pipeline rate.")
_REFERENCE = flags.DEFINE_string("reference", "", "'torch' also times the PyTorch mirror (benchmarks/).")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", True, "With --reference=torch, also time torch.compile.")
_CHANNELS_LAST = flags.DEFINE_bool("torch_channels_last", False, "PyTorch reference in channels_last format.")
_JSON = flags.DEFINE_string("json", None, "Write every figure and the machine description to this JSON file.")
_REFERENCES = ("", "torch")


def _fmt(value, scale=1.0, digits=1):
  return "n/a" if value is None else f"{value / scale:,.{digits}f}"


def _times(ratio):
  return "n/a" if ratio is None else f"{ratio:.2f}x"


def _row(name, figures):
  step = (f"{_fmt(figures.get('step_time_median_s'), 1e-3, 2)} "
          f"[{_fmt(figures.get('step_time_min_s'), 1e-3, 2)}, {_fmt(figures.get('step_time_max_s'), 1e-3, 2)}]")
  return (f"{name:<15}{_fmt(figures.get('compile_time_s'), 1, 2):>10}  {step:>28}  "
          f"{_fmt(figures.get('images_per_sec')):>10}  {_fmt(figures.get('achieved_flops_per_sec'), 1e9):>8}")


def format_table(result):
  """The human-readable summary of `benchmark.run`'s result."""
  m, memory = result["machine"], result["memory"]
  lines = [
      f"{result['model']}: batch {result['batch_size']}, d_steps {result['d_steps']}, steps/call "
      f"{result['steps_per_call']}, dtype {result['dtype']}, "
      f"upsample {result['upsample_impl']}, donate {result['donate']}, reuse_fakes {result['reuse_fakes']}",
      f"device: {m['platform']} {m['device_kind']} ({m['cpu_model']}), 1 device measured, XLA CPU threads "
      f"{result['xla_cpu_threads']}; jax {m['versions']['jax']}, torch {m['versions']['torch']}",
      f"{'':<15}{'compile s':>10}  {'step ms median [min, max]':>28}  {'images/s':>10}  {'GFLOP/s':>8}",
      _row("jax (xla)", result)]
  torch_result = result.get("torch")
  if torch_result:
    for mode, label in (("eager", "torch eager"), ("compiled", "torch.compile")):
      figures = torch_result[mode]
      lines.append(_row(label, figures) if figures["available"] else f"{label:<15}unavailable: {figures['reason']}")
  lines += [
      f"images/s: {result['images_per_sec_definition']}; torch 'compile s' is its first step",
      f"XLA FLOPs/step {_fmt(result['flops_per_step'], 1e9, 3)} G ({result['flops_source']})",
      f"peak: {result['peak_matmul_size']}^2 {result['dtype']} matmul {_fmt(result['peak_flops_per_sec'], 1e9)} "
      f"GFLOP/s; the JAX step reaches {_fmt(result['fraction_of_peak'], 0.01)}% of it",
      f"memory: XLA compiled peak {_fmt(memory['compiled_peak_bytes'], 2**20)} MiB, device allocator peak "
      f"{_fmt(memory['device_peak_bytes_in_use'], 2**20)} MiB",
      f"input pipeline alone: {_fmt(result['data_images_per_sec'])} images/s = "
      f"{result['data_to_train_ratio']:.1f}x the training rate (target >= 10x)"]
  if result.get("step_time_interval_mean_s"):
    torch_means = {mode: ((torch_result or {}).get(mode) or {}).get("step_time_interval_mean_s")
                   for mode in ("eager", "compiled")}
    speed = result.get("jax_speedup_vs_torch") or {}
    lines.append(f"with lazy R1 (one discriminator update in {result['spec']['r1_interval']}), mean step ms: jax "
                 f"{_fmt(result['step_time_interval_mean_s'], 1e-3, 2)}, torch eager {_fmt(torch_means['eager'], 1e-3, 2)} "
                 f"(JAX {_times(speed.get('eager_interval_mean'))}), torch.compile "
                 f"{_fmt(torch_means['compiled'], 1e-3, 2)} (JAX {_times(speed.get('compiled_interval_mean'))})")
  if torch_result:
    speed = result["jax_speedup_vs_torch"]
    lines.append(f"JAX speed-up (torch step time / JAX step time): eager {_fmt(speed['eager'], 1, 2)}, "
                 f"torch.compile {_fmt(speed['compiled'], 1, 2)}; params jax {result['param_count']:,} torch "
                 f"{torch_result['param_count']:,}; torch threads {torch_result['threads']}, channels_last "
                 f"{torch_result['channels_last']}")
  return "\n".join(lines)


def _run():
  if _REFERENCE.value not in _REFERENCES:
    raise ValueError(f"Unknown reference '{_REFERENCE.value}'; choose one of: torch (or leave it empty)")
  opts = benchmark.Options(
      model=_MODEL.value or "", batch_size=_BATCH_SIZE.value, steps=_STEPS.value, warmup=_WARMUP.value,
      dtype=_DTYPE.value, upsample_impl=_UPSAMPLE.value, width=_WIDTH.value, steps_per_call=_STEPS_PER_CALL.value,
      reuse_fakes=_REUSE_FAKES.value, donate=_DONATE.value,
      threads=_THREADS.value or os.cpu_count(), peak_size=_PEAK_SIZE.value, data_batches=_DATA_BATCHES.value)
  benchmark.validate_options(opts)  # before the slow parts: bad input fails at once
  benchmark.pin_threads(opts.threads)  # before the first JAX computation starts XLA's thread pool
  reference = None
  if _REFERENCE.value == "torch":
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top  # optional dependency
    reference = functools.partial(torch_reference.run_reference, channels_last=_CHANNELS_LAST.value,
                                  compile_step=_TORCH_COMPILE.value)
  result = benchmark.run(opts, reference)
  print(format_table(result), flush=True)
  if _JSON.value:
    benchmark.write_json(result, _JSON.value)


if __name__ == "__main__":
  common.run(_run, failures=(ImportError,))
