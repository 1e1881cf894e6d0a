r"""One command that measures what only an accelerator can show, and writes JSON and a markdown table.

  python -m benchmarks.device_check --out=DIR [--parts=peaks,models,stacked,imbalance,singan] \
      [--models=dcgan_mnist,classifier] [--notorch] [--tiny]

Parts, in the order they run (each one's figures are written to DIR as soon as it
finishes, so a run cut short keeps what it measured):
  peaks:     matmul FLOP/s in bf16, fp32 at the default precision (TF32 on NVIDIA) and fp32 at 'highest'.
  models:    every benchmark model's train step at batch 128 (fp32) against PyTorch eager and torch.compile,
             then a sweep over batch sizes (and bf16 for the convolutional GANs); the fastest setting is
             timed again against PyTorch eager at the same batch and dtype.
  stacked:   the per-seed classifiers and the per-class DCGANs as one vmapped program against sequential
             training (model-steps per second).
  imbalance: the imbalance benchmark's full config on MNIST with 5 seeds, or the methods given with
             --imbalance_methods, with the whole run's time extrapolated from the measured stages.
  singan:    the default SinGAN run end to end (every scale and every application output).
--tiny runs every part at tiny sizes (seconds per part on a CPU); the tests run it.

Outputs: DIR/device_check.json (every figure, the machine, the command) and DIR/device_check.md.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

from absl import flags

from experiments import common

_OUT = flags.DEFINE_string("out", None, "Required. Folder for device_check.json and device_check.md.")
_PARTS = flags.DEFINE_list("parts", "peaks,models,stacked,imbalance,singan", "Parts to run, in this order.")
_MODELS = flags.DEFINE_list("models", [], "Benchmark models of the 'models' part (default: all).")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch references (eager and torch.compile).")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", True, "Also time torch.compile at the base batch.")
_TINY = flags.DEFINE_bool("tiny", False, "Tiny sizes everywhere: a CPU smoke run of every part.")
_IMBALANCE_METHODS = flags.DEFINE_string("imbalance_methods", "", "Methods of the imbalance part ('' = the "
                                         "full config's); the whole run is extrapolated from them.")
_IMBALANCE_SEEDS = flags.DEFINE_integer("imbalance_seeds", 5, "Classifier seeds of the imbalance part.")

PARTS = ("peaks", "models", "stacked", "imbalance", "singan")


def validate(parts, model_names, all_models) -> None:
  """Raises ValueError naming a bad part or model and the allowed ones (the entrypoint exits 2)."""
  for part in parts:
    if part not in PARTS:
      raise ValueError(f"Unknown part '{part}'; choose from: {', '.join(PARTS)}")
  for name in model_names:
    if name not in all_models:
      raise ValueError(f"Unknown model '{name}'; choose from: {', '.join(all_models)}")
  if not parts:
    raise ValueError(f"--parts is empty; choose from: {', '.join(PARTS)}")


def _configs(variant: str):
  """The (imbalance, SinGAN) configs of a variant: '' for the real check, 'smoke' for --tiny."""
  from experiments.configs import imbalance  # pylint: disable=g-import-not-at-top
  from experiments.configs import singan  # pylint: disable=g-import-not-at-top
  return imbalance.get_config(variant), singan.get_config(variant)


def _run():
  if not _OUT.value:
    raise ValueError("--out is required: a folder for device_check.json and device_check.md")
  from benchmarks import step_benchmark  # pylint: disable=g-import-not-at-top  # after the runtime set-up
  validate(_PARTS.value, _MODELS.value, tuple(step_benchmark.MODELS))
  from benchmarks import device_parts  # pylint: disable=g-import-not-at-top
  settings = device_parts.Settings.make(tiny=_TINY.value, torch=_TORCH.value,
                                        models=tuple(_MODELS.value) or tuple(step_benchmark.MODELS),
                                        imbalance_methods=_IMBALANCE_METHODS.value,
                                        imbalance_seeds=_IMBALANCE_SEEDS.value, idx_dir=common.idx_dir(),
                                        configs=_configs, torch_compile=_TORCH_COMPILE.value)
  report = device_parts.Report(_OUT.value, command=" ".join(["python -m benchmarks.device_check"] + sys.argv[1:]))
  with tempfile.TemporaryDirectory(prefix="device_check_") as scratch:
    for part in _PARTS.value:
      start = time.perf_counter()
      print(f"[device_check] {part} ...", flush=True)
      publish = lambda figures, part=part: report.add(part, figures)
      publish(device_parts.RUNNERS[part](settings, os.path.join(scratch, part), publish))
      print(f"[device_check] {part} done in {time.perf_counter() - start:.0f} s", flush=True)
  print(report.markdown(), flush=True)


if __name__ == "__main__":
  common.run(_run, failures=(ImportError,))
