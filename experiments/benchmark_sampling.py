r"""Images per second of a diffusion model's sampler at several step counts (one device).

  python -m experiments.benchmark_sampling --config=experiments/configs/ldm_mnist.py:cpu \
      [--sample_steps=10,25,50] [--batch_size=500] [--repeats=3] [--json=out.json]

The config gives the model's shapes, sampler (DDIM or DDPM) and guidance scale; the
parameters are freshly initialised (sampling cost does not depend on training).
Prints a markdown table; --json writes every figure and the machine description.
"""
from absl import flags
from ml_collections import config_flags

from benchmarks import sampling_benchmark
from experiments import common
from gan_jax import fs
from gan_jax.diffusion import driver

_CONFIG = config_flags.DEFINE_config_file("config", None, "Diffusion config file (path[:variant]).",
                                          lock_config=True)
_SAMPLE_STEPS = flags.DEFINE_list("sample_steps", ["10", "25", "50"], "Sampler step counts to time.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 500, "Images per jitted sampler call.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per step count (median reported).")
_JSON = flags.DEFINE_string("json", None, "Write the result to this JSON file.")
flags.mark_flags_as_required(["config"])


def _run():
  try:
    steps = tuple(int(s) for s in _SAMPLE_STEPS.value)
  except ValueError:
    raise ValueError(f"--sample_steps must be integers, got {','.join(_SAMPLE_STEPS.value)}") from None
  info = driver.validate_config(_CONFIG.value)
  opts = sampling_benchmark.SamplingOptions(steps, _BATCH_SIZE.value, _REPEATS.value)
  result = sampling_benchmark.run(_CONFIG.value, opts, image_shape=info.image_shape, num_classes=info.num_classes)
  print(sampling_benchmark.format_table(result), flush=True)
  if _JSON.value:
    fs.write_json(_JSON.value, result)


if __name__ == "__main__":
  common.run(_run)
