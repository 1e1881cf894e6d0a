"""The parts of `benchmarks.device_check`: each measures one thing and returns JSON-able figures.

A part takes the run's `Settings` and a scratch folder of its own. `Report` keeps
every part's figures, rewrites device_check.json and device_check.md after each
part (atomically), and renders the tables.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from benchmarks import stacked_benchmark
from benchmarks import step_benchmark
from gan_jax import fs

# Families whose convolutions take a compute dtype (the MLP GAN and the classifier stay fp32).
_BF16_MODELS = ("dcgan_mnist", "dcgan_cifar10", "cgan_mnist", "acgan_mnist", "wgan_gp_mnist")
# The sweep's largest batch for models whose activations are MBs per image (a U-Net or ResNet at full
# resolution on every layer): 4096 would need over 100 GB; 512 already fills the device.
_SWEEP_BATCH_CAP = {"ddpm_mnist": 512, "ldm_mnist": 512, "pix2pix_edges2digits": 512, "cyclegan_thin2thick": 512}


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of every part: the real check's or --tiny's."""
  tiny: bool
  torch: bool
  models: tuple[str, ...]
  batch_size: int
  sweep_batches: tuple[int, ...]
  steps: int
  warmup: int
  width: int
  peak_size: int
  data_examples: int
  torch_compile: bool
  bf16_sweep: bool
  stacked: tuple[tuple[str, int, int], ...]  # (model, members, batch per member)
  imbalance_config: Any  # the imbalance benchmark's ConfigDict (the full config, or :smoke with --tiny)
  imbalance_methods: str
  imbalance_seeds: int
  singan_config: Any  # the SinGAN ConfigDict (the default, or :smoke with --tiny)
  idx_dir: str | None

  @classmethod
  def make(cls, tiny: bool, torch: bool, models: tuple[str, ...], imbalance_methods: str, imbalance_seeds: int,
           idx_dir: str | None, configs: Callable[[str], tuple[Any, Any]], torch_compile: bool = True) -> "Settings":
    """The sizes of a --tiny or a real check; `configs(variant)` gives the (imbalance, SinGAN) configs."""
    if tiny:
      # Every part's code path at the smallest sizes: one sweep batch, no bf16 sweep (XLA:CPU emulates bf16
      # convolutions slowly), one imbalance seed, the smoke configs.
      return cls(tiny=True, torch=torch, models=models, batch_size=8, sweep_batches=(16,), steps=2, warmup=1,
                 width=8, peak_size=128, data_examples=64, torch_compile=False, bf16_sweep=False,
                 stacked=(("classifier", 3, 8), ("dcgan_mnist", 2, 8)),
                 imbalance_config=configs("smoke")[0], imbalance_methods=imbalance_methods or "none,cgan",
                 imbalance_seeds=1, singan_config=_one_chunk_per_scale(configs("smoke")[1]), idx_dir=idx_dir)
    on_cpu = jax.devices()[0].platform == "cpu"
    return cls(tiny=False, torch=torch, models=models, batch_size=128, sweep_batches=(4096,), steps=20, warmup=5,
               width=0, peak_size=2048 if on_cpu else 8192, data_examples=60_000, torch_compile=torch_compile, bf16_sweep=True,
               # The imbalance run's shapes: 5 classifier seeds (and 30 = 6 methods x 5 seeds) at
               # batch 128, and the 10 per-class DCGANs at batch 64.
               stacked=(("classifier", 5, 128), ("classifier", 30, 128), ("dcgan_mnist", 10, 64)),
               imbalance_config=configs("")[0], imbalance_methods=imbalance_methods,
               imbalance_seeds=imbalance_seeds, singan_config=configs("")[1], idx_dir=idx_dir)


def _one_chunk_per_scale(config):
  """A SinGAN config training one compiled chunk per scale: every scale and output, a third of :smoke's steps."""
  config = config.copy_and_resolve_references()
  config.iters_per_scale = config.chunk_size
  return config


def _options(settings: Settings, model: str, batch: int, dtype: str, time_parts: bool = True) -> step_benchmark.Options:
  # The sweep's points time only the usual step: the lazy-R1 parts are measured once, at the base batch.
  return step_benchmark.Options(model=model, batch_size=batch, steps=settings.steps, warmup=settings.warmup,
                                dtype=dtype, width=settings.width, peak_size=settings.peak_size,
                                data_examples=settings.data_examples, data_batches=5 if settings.tiny else 20,
                                time_parts=time_parts)


def _reference(settings: Settings, compile_step: bool) -> Callable | None:
  if not settings.torch:
    return None
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top  # optional dependency
  return functools.partial(torch_reference.run_reference, compile_step=compile_step)


def _summary(result: dict) -> dict:
  """One row: the figures a table needs from `step_benchmark.run`'s result."""
  row = {k: result[k] for k in ("model", "batch_size", "dtype", "images_per_sec", "step_time_median_s",
                                "compile_time_s", "flops_per_step", "achieved_flops_per_sec", "peak_flops_per_sec")}
  torch_result = result.get("torch") or {}
  for mode in ("eager", "compiled"):
    figures = torch_result.get(mode) or {}
    row[f"torch_{mode}_images_per_sec"] = figures.get("images_per_sec")
    row[f"torch_{mode}_reason"] = None if figures.get("images_per_sec") else figures.get("reason")
    row[f"speedup_vs_torch_{mode}"] = (result.get("jax_speedup_vs_torch") or {}).get(mode)
    # Lazy R1 (StyleGAN2): the mean over a regularisation interval, where the base batch measured it.
    row[f"speedup_vs_torch_{mode}_interval_mean"] = (result.get("jax_speedup_vs_torch") or {}).get(
        f"{mode}_interval_mean")
  row["step_time_interval_mean_s"] = result.get("step_time_interval_mean_s")
  return row


def run_peaks(settings: Settings, scratch: str, publish: Callable[[dict], None]) -> dict:
  """Matmul FLOP/s: bf16, fp32 at the default precision and fp32 at 'highest', in this process."""
  del scratch, publish
  device, size = jax.devices()[0], settings.peak_size
  peaks = {"bfloat16": step_benchmark.peak_matmul(jnp.bfloat16, size, device),
           "float32": step_benchmark.peak_matmul(jnp.float32, size, device)}
  with jax.default_matmul_precision("highest"):
    peaks["float32_highest"] = step_benchmark.peak_matmul(jnp.float32, size, device)
  return {"size": size, **{k: v["peak_flops_per_sec"] for k, v in peaks.items()}, "details": peaks,
          "machine": step_benchmark.machine_info()}


def _sweep(settings: Settings, model: str) -> dict:
  base = step_benchmark.run(_options(settings, model, settings.batch_size, "float32"),
                            _reference(settings, settings.torch_compile))
  candidates, failures = [base], []
  dtypes = ("float32", "bfloat16") if model in _BF16_MODELS and settings.bf16_sweep else ("float32",)
  for dtype in dtypes:
    for batch in sorted({min(b, _SWEEP_BATCH_CAP.get(model, b)) for b in settings.sweep_batches}):
      try:
        candidates.append(step_benchmark.run(_options(settings, model, batch, dtype, time_parts=False)))
      except jax.errors.JaxRuntimeError as e:  # a device error at one size must not lose the others
        failures.append({"batch_size": batch, "dtype": dtype, "error": _one_line(e)})
  best = max(candidates, key=lambda r: r["images_per_sec"])
  if best is not base and settings.torch:
    best = step_benchmark.torch_comparison(best, _reference(settings, False))
  print(f"  {model}: {base['images_per_sec']:,.0f} img/s at batch {settings.batch_size}; best "
        f"{best['images_per_sec']:,.0f} at batch {best['batch_size']} {best['dtype']}", flush=True)
  return {"base": _summary(base), "best": _summary(best),
          "sweep": [{k: c[k] for k in ("batch_size", "dtype", "images_per_sec")} for c in candidates],
          "failures": failures}


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())[:300]


def run_models(settings: Settings, scratch: str, publish: Callable[[dict], None]) -> dict:
  """Each model at the base batch against PyTorch, then the sweep; the fastest setting against eager again.

  Each finished model is published at once, so a run cut short keeps it.
  """
  del scratch
  rows = {}
  for model in settings.models:
    try:
      rows[model] = _sweep(settings, model)
    except jax.errors.JaxRuntimeError as e:
      rows[model] = {"error": _one_line(e)}
      print(f"  {model}: failed: {rows[model]['error']}", flush=True)
    publish(rows)
  return rows


def run_stacked(settings: Settings, scratch: str, publish: Callable[[dict], None]) -> dict:
  """The study's many small models as one vmapped program against sequential training."""
  del scratch, publish
  rows = []
  for model, members, batch in settings.stacked:
    opts = stacked_benchmark.StackedOptions(model=model, members=members, batch_size=batch, steps=settings.steps,
                                            warmup=settings.warmup, width=settings.width)
    rows.append(stacked_benchmark.run(opts))
    print(f"  {model} x {members}: vmapped {rows[-1]['stacked_speedup']:.2f}x sequential", flush=True)
  return {"rows": rows}


def run_imbalance(settings: Settings, scratch: str, publish: Callable[[dict], None]) -> dict:
  """The imbalance benchmark on MNIST (all methods or some), with the whole run extrapolated from its stages."""
  del publish
  from gan_jax.protocols.imbalance import methods as methods_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.protocols.imbalance import pipeline  # pylint: disable=g-import-not-at-top
  config = settings.imbalance_config.copy_and_resolve_references()
  config.num_seeds = settings.imbalance_seeds
  full = methods_lib.parse_methods(config.methods)
  if settings.imbalance_methods:
    config.methods = settings.imbalance_methods
  measured = methods_lib.parse_methods(config.methods)
  seconds: dict[str, float] = {}
  start = time.perf_counter()
  results = pipeline.run_benchmark(config, scratch, idx_dir=settings.idx_dir, stage_seconds=seconds)
  wall = time.perf_counter() - start
  classifier_s = [s for name, s in seconds.items() if name.startswith("classifier ")]
  generator_names = lambda methods: {methods_lib.get_method(m).generator for m in methods} - {None}
  per_generator = {g: sum(s for name, s in seconds.items() if name.split(" ")[1:2] == [g]
                          and name.split(" ")[0] in ("generator", "synthetic", "quality")) for g in generator_names(measured)}
  missing_generators = sorted(generator_names(full) - generator_names(measured))
  missing_classifiers = (len(full) - len([m for m in measured if m in full])) * config.num_seeds
  estimate = (wall + missing_classifiers * (statistics.mean(classifier_s) if classifier_s else 0.0)
              + len(missing_generators) * (statistics.mean(per_generator.values()) if per_generator else 0.0))
  balanced = {m: results["methods"][m]["balanced"]["balanced_accuracy"]["mean"]
              for m in measured} if "methods" in results else {}
  return {"dataset": config.dataset, "profile": config.profile, "seeds": config.num_seeds,
          "methods_run": list(measured), "methods_full": list(full), "wall_s": wall, "stage_seconds": seconds,
          "classifier_stage_median_s": statistics.median(classifier_s) if classifier_s else None,
          "classifier_stages": len(classifier_s), "generator_pipeline_s": per_generator,
          "estimated_generators": missing_generators, "estimated_extra_classifiers": missing_classifiers,
          "full_run_estimate_s": estimate, "balanced_accuracy_mean": balanced}


def run_singan(settings: Settings, scratch: str, publish: Callable[[dict], None]) -> dict:
  """The default SinGAN config end to end: every scale, then every application output."""
  del publish
  from gan_jax.singan import train as singan_train  # pylint: disable=g-import-not-at-top
  config = settings.singan_config
  start = time.perf_counter()
  result = singan_train.train(config, scratch)
  wall = time.perf_counter() - start
  scale_s = [r.get("seconds") for r in result["records"]]
  return {"variant": "smoke" if settings.tiny else "default", "scales": len(result["sizes"]),
          "sizes": [list(s) for s in result["sizes"]], "iters_per_scale": config.iters_per_scale, "wall_s": wall,
          "scale_seconds": scale_s, "outputs": sorted(result["outputs"])}


RUNNERS: dict[str, Callable[[Settings, str, Callable[[dict], None]], dict]] = {
    "peaks": run_peaks, "models": run_models, "stacked": run_stacked, "imbalance": run_imbalance,
    "singan": run_singan}


class Report:
  """Every part's figures, rewritten to DIR/device_check.{json,md} after each part."""

  def __init__(self, out: str, command: str):
    self.out, self.command = out, command
    self.parts: dict[str, Any] = {}
    fs.makedirs(out)

  def add(self, part: str, figures: dict) -> None:
    self.parts[part] = figures
    payload = {"command": self.command, "machine": step_benchmark.machine_info(), "parts": self.parts}
    fs.write_text(fs.join(self.out, "device_check.json"), json.dumps(payload, indent=2, default=float))
    fs.write_text(fs.join(self.out, "device_check.md"), self.markdown())

  def markdown(self) -> str:
    from benchmarks import device_tables  # pylint: disable=g-import-not-at-top
    return device_tables.render(self.command, step_benchmark.machine_info(), self.parts)
