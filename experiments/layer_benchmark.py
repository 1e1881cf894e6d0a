r"""Times each convolution of a DCGAN alone (forward, forward+backward), JAX next to PyTorch.

  python -m experiments.layer_benchmark --model=dcgan_mnist --batch_size=128 [--reps=10] \
      [--reference=torch] [--threads=2] [--json=layers.json]

The per-layer view of experiments.benchmark: which convolution, in which formulation,
takes the step's time (see benchmarks/layer_benchmark.py).
"""
import functools

from absl import flags

from experiments import common
from benchmarks import step_benchmark as benchmark
from benchmarks import layer_benchmark

_MODEL = flags.DEFINE_string("model", None, f"Required. One of: {', '.join(layer_benchmark.LAYER_MODELS)}.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per pass.")
_REPS = flags.DEFINE_integer("reps", 10, "Timed repetitions per layer after a warm-up (medians reported).")
_REFERENCE = flags.DEFINE_string("reference", "", "'torch' also times the same convolutions in PyTorch eager.")
_THREADS = flags.DEFINE_integer("threads", 0, "CPU threads for XLA and PyTorch (0 = all this process may use).")
_JSON = flags.DEFINE_string("json", None, "Write every figure and the machine description to this JSON file.")


def _ms(seconds):
  return f"{1e3 * seconds:9.1f}"


def format_table(result):
  """One line per layer and formulation: forward and forward+backward milliseconds, JAX and PyTorch."""
  m = result["machine"]
  lines = [f"{result['model']}: batch {result['batch_size']}, medians of {result['reps']}; {m['platform']} "
           f"{m['device_kind']} ({m['cpu_model']}), {m['cpu_threads_available']} threads",
           f"{'layer':<10}{'input':>14}{'out':>6}{'k':>3}{'s':>3}  {'impl':<10}{'GFLOP':>7}"
           f"{'jax fwd':>10}{'jax f+b':>10}{'torch fwd':>10}{'torch f+b':>10}"]
  for row in result["layers"]:
    shape = "x".join(str(v) for v in row["in_shape"])
    for impl, times in row["jax"].items():
      torch_times = row.get("torch")
      mark = "*" if impl == row["auto_impl"] else " "
      ref = (_ms(torch_times["forward_s"]) + " " + _ms(torch_times["forward_backward_s"])) if torch_times else ""
      lines.append(f"{row['name']:<10}{shape:>14}{row['features']:>6}{row['kernel_size']:>3}{row['stride']:>3}  "
                   f"{impl + mark:<10}{row['flops'] / 1e9:7.2f}{_ms(times['forward_s'])} "
                   f"{_ms(times['forward_backward_s'])}{ref}")
  lines.append("* = the formulation the model uses (upsample_impl=auto); times in ms")
  return "\n".join(lines)


def _run():
  if _MODEL.value not in layer_benchmark.LAYER_MODELS:
    raise ValueError(f"Unknown model {_MODEL.value!r}; choose one of: {', '.join(layer_benchmark.LAYER_MODELS)}")
  if _REFERENCE.value not in ("", "torch"):
    raise ValueError(f"Unknown reference {_REFERENCE.value!r}; choose one of: torch (or leave it empty)")
  threads = benchmark.pin_threads(_THREADS.value)  # before JAX starts XLA's thread pool
  reference = None
  if _REFERENCE.value == "torch":
    from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top  # optional dependency
    reference = functools.partial(torch_reference.time_conv_layer, threads=threads)
  result = layer_benchmark.run(_MODEL.value, _BATCH_SIZE.value, _REPS.value, reference)
  print(format_table(result), flush=True)
  if _JSON.value:
    benchmark.write_json(result, _JSON.value)


if __name__ == "__main__":
  common.run(_run, failures=(ImportError,))
