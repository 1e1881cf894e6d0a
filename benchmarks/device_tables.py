"""Markdown tables of `benchmarks.device_check`'s figures (one section per part that ran)."""
from __future__ import annotations


def _n(value, scale: float = 1.0, digits: int = 0) -> str:
  return "n/a" if value is None else f"{value / scale:,.{digits}f}"


def _x(value) -> str:
  return "n/a" if value is None else f"{value:.2f}x"


def _share(achieved, peak) -> str:
  return "n/a" if not achieved or not peak else f"{100.0 * achieved / peak:.1f} %"


def _machine(machine: dict) -> str:
  versions = machine.get("versions", {})
  return (f"{machine.get('platform')} {machine.get('device_kind')} ({machine.get('cpu_model')}, "
          f"{machine.get('cpu_threads_available')} CPU threads); jax {versions.get('jax')}, torch {versions.get('torch')}")


def _peaks(figures: dict) -> list[str]:
  return ["## Matmul peaks", "", f"{figures['size']}^3 matmuls, median of 5, in this run.", "",
          "| dtype | TFLOP/s |", "|---|---|",
          f"| bf16 | {_n(figures['bfloat16'], 1e12, 1)} |",
          f"| fp32, default precision (TF32 on NVIDIA GPUs) | {_n(figures['float32'], 1e12, 1)} |",
          f"| fp32, precision 'highest' | {_n(figures['float32_highest'], 1e12, 1)} |", ""]


def _models(rows: dict, peaks: dict | None) -> list[str]:
  bf16 = (peaks or {}).get("bfloat16")
  fp32 = (peaks or {}).get("float32")
  lines = ["## Train-step throughput against PyTorch", "",
           "Images/s = real images consumed per second; speed-up = PyTorch step time / JAX step time "
           "(> 1: JAX faster). 'best' is the fastest batch and dtype of the sweep, against PyTorch eager at "
           "the same batch and dtype (autocast for bf16). FLOP/s from XLA's count of the step.", "",
           "| model | setting | batch | dtype | JAX img/s | torch eager img/s | vs eager | torch.compile img/s "
           "| vs compile | share of bf16 peak | share of fp32 peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for model, entry in rows.items():
    if "error" in entry:
      lines.append(f"| {model} | failed: {entry['error']} |||||||||||")
      continue
    for setting in ("base", "best"):
      r = entry[setting]
      if setting == "best" and r == entry["base"]:
        continue
      lines.append(
          f"| {model} | {setting} | {r['batch_size']} | {r['dtype']} | {_n(r['images_per_sec'])} | "
          f"{_n(r['torch_eager_images_per_sec'])} | {_x(r['speedup_vs_torch_eager'])} | "
          f"{_n(r['torch_compiled_images_per_sec'])} | {_x(r['speedup_vs_torch_compiled'])} | "
          f"{_share(r['achieved_flops_per_sec'], bf16)} | {_share(r['achieved_flops_per_sec'], fp32)} |")
  lines += ["", "Sweep (JAX images/s):", ""]
  for model, entry in rows.items():
    if "error" in entry:
      continue
    sweep = ", ".join(f"{s['batch_size']} {s['dtype']}: {_n(s['images_per_sec'])}" for s in entry["sweep"])
    failed = "; ".join(f"{f['batch_size']} {f['dtype']} failed: {f['error']}" for f in entry.get("failures", []))
    lines.append(f"- {model}: {sweep}" + (f" ({failed})" if failed else ""))
  return lines + [""]


def _stacked(figures: dict) -> list[str]:
  lines = ["## Many models as one program", "",
           "Members trained at once (stacked parameters, vmapped step) against the same members stepped one "
           "after another; model-steps/s = members / round time. 'diff' is the largest state difference "
           "after one step of both ways from the same states and batches.", "",
           "| model | members | batch each | sequential model-steps/s | vmapped model-steps/s | speed-up | diff |",
           "|---|---|---|---|---|---|---|"]
  for r in figures["rows"]:
    lines.append(f"| {r['model']} | {r['members']} | {r['batch_size']} | {_n(r['sequential_model_steps_per_sec'])} | "
                 f"{_n(r['stacked_model_steps_per_sec'])} | {_x(r['stacked_speedup'])} | "
                 f"{r['max_state_difference_after_one_step']:.1e} |")
  return lines + [""]


def _imbalance(f: dict) -> list[str]:
  lines = ["## Imbalance benchmark", "",
           f"{f['dataset']} {f['profile']}, {f['seeds']} seeds, methods run: {', '.join(f['methods_run'])}.", "",
           f"- wall time of what ran: {_n(f['wall_s'])} s; {f['classifier_stages']} classifier stages, median "
           f"{_n(f['classifier_stage_median_s'], 1, 1)} s each",
           "- generators (train + synthetic set + quality): "
           + (", ".join(f"{g} {_n(s)} s" for g, s in f["generator_pipeline_s"].items()) or "none"),
           f"- the full config ({len(f['methods_full'])} methods x {f['seeds']} seeds): "
           f"{_n(f['full_run_estimate_s'])} s"
           + ("" if not (f["estimated_generators"] or f["estimated_extra_classifiers"]) else
              f", extrapolated: {f['estimated_extra_classifiers']} more classifiers at the measured mean and "
              f"generators {', '.join(f['estimated_generators']) or 'none'} at the measured generators' mean")]
  if f["balanced_accuracy_mean"]:
    lines.append("- balanced accuracy (mean over seeds): "
                 + ", ".join(f"{m} {v:.2f}" for m, v in f["balanced_accuracy_mean"].items()))
  return lines + [""]


def _singan(f: dict) -> list[str]:
  scales = ", ".join(_n(s, 1, 1) for s in f["scale_seconds"] if s is not None)
  return ["## SinGAN end to end", "",
          f"Config '{f['variant']}': {f['scales']} scales up to {f['sizes'][-1]}, {f['iters_per_scale']} iterations "
          f"per scale; wall time {_n(f['wall_s'])} s (all scales and {len(f['outputs'])} outputs).", "",
          f"Seconds per scale: {scales}.", ""]


def render(command: str, machine: dict, parts: dict) -> str:
  lines = ["# Device check", "", "```bash", command, "```", "", f"Machine: {_machine(machine)}.", ""]
  if "peaks" in parts:
    lines += _peaks(parts["peaks"])
  if "models" in parts:
    lines += _models(parts["models"], parts.get("peaks"))
  if "stacked" in parts:
    lines += _stacked(parts["stacked"])
  if "imbalance" in parts:
    lines += _imbalance(parts["imbalance"])
  if "singan" in parts:
    lines += _singan(parts["singan"])
  return "\n".join(lines)
