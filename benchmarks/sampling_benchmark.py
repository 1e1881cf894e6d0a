"""What drawing images from a diffusion model costs: images per second of the sampler at several step counts.

A diffusion model's sample costs one denoiser call per sampler step (two with
classifier-free guidance, batched as one call of twice the batch), plus the
first stage's decoder for latent diffusion. This module times the jitted
sampler of `gan_jax.diffusion.train.make_sampler` on one device, with the
model's shapes and the config's sampler and guidance; the parameters are freshly
initialised, since what a sample costs does not depend on how well the model
was trained.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from benchmarks import step_benchmark
from gan_jax.diffusion import sampling
from gan_jax.diffusion import train


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
  """What to measure.

  Attributes:
    sample_steps: the sampler step counts to time (each <= the schedule's diffusion_steps).
    batch_size: images per jitted call.
    repeats: timed calls per step count (the median is reported).
  """
  sample_steps: Sequence[int] = (10, 25, 50)
  batch_size: int = 500
  repeats: int = 3


def run(config: ml_collections.ConfigDict, opts: SamplingOptions, *, image_shape: Sequence[int],
        num_classes: int) -> dict[str, Any]:
  """Times one batch of `opts.batch_size` images per call at every step count in `opts.sample_steps`.

  Returns:
    {'model', 'sampler', 'guidance', 'batch_size', 'machine', 'rows': [{'sample_steps', 'compile_s',
    'seconds_per_batch_median', 'images_per_sec', 'denoiser_evaluations_per_image'}]}.
  """
  for name in ("batch_size", "repeats"):
    if getattr(opts, name) < 1:
      raise ValueError(f"{name} must be >= 1, got {getattr(opts, name)}")
  programs = train.build(config, image_shape, num_classes)  # checks every config field
  for n in opts.sample_steps:
    if not 1 <= n <= config.diffusion_steps:
      raise ValueError(f"sample_steps {n} must lie in [1, {config.diffusion_steps}] (the config's diffusion_steps)")
  params, first_stage_params = train.initial_parameters(programs)
  labels = np.arange(opts.batch_size) % num_classes
  rows = []
  for n in opts.sample_steps:
    steps_config = config.copy_and_resolve_references()
    with steps_config.unlocked():
      steps_config.sample_steps = int(n)
    sample = train.make_sampler(steps_config, programs, params, first_stage_params, 1.0)
    start = time.perf_counter()
    images = sample(jax.random.PRNGKey(0), labels, batch_size=opts.batch_size)  # compiles, then runs once
    compile_s = time.perf_counter() - start
    times = []
    for r in range(opts.repeats):
      start = time.perf_counter()
      images = sample(jax.random.PRNGKey(r + 1), labels, batch_size=opts.batch_size)  # to_uint8 waits for it
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    rows.append({"sample_steps": int(n), "compile_s": compile_s, "seconds_per_batch_median": median,
                 "seconds_per_batch": times, "images_per_sec": opts.batch_size / median,
                 # Guidance evaluates the conditional and the unconditional branch at every step.
                 "denoiser_evaluations_per_image": 2 * len(sampling.timesteps(config.diffusion_steps, n)),
                 "image_shape": list(images.shape[1:])})
  return {"model": config.model, "dataset": config.dataset, "sampler": config.sampler,
          "guidance": float(config.guidance), "batch_size": opts.batch_size, "repeats": opts.repeats,
          "data_shape": list(programs.data_shape), "machine": step_benchmark.machine_info(), "rows": rows}


def format_table(result: dict[str, Any]) -> str:
  """A markdown table of `run`'s result, with the machine it ran on."""
  m = result["machine"]
  lines = [f"{result['model']} on {result['dataset']} ({result['sampler']}, guidance {result['guidance']:g}, "
           f"batch {result['batch_size']}, denoiser input {tuple(result['data_shape'])}); "
           f"{m['platform']} {m['device_kind']} ({m['cpu_model']}), median of {result['repeats']} calls",
           "", "| sampler steps | images/s | s per batch | compile s |", "|---|---|---|---|"]
  for row in result["rows"]:
    lines.append(f"| {row['sample_steps']} | {row['images_per_sec']:,.1f} | {row['seconds_per_batch_median']:.2f} "
                 f"| {row['compile_s']:.1f} |")
  return "\n".join(lines)
