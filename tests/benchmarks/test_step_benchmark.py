"""The benchmark library, the PyTorch reference, multi-step calls and the entrypoint (tiny settings)."""
import dataclasses
import functools
import importlib
import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.extend.core  # noqa: F401  # jaxprs_in_params, ClosedJaxpr
import numpy as np
import pytest

from experiments import common
from benchmarks import step_benchmark as benchmark
from gan_jax import parallel

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The suite's LLVM level (conftest.FAST_COMPILE_FLAG): these tests check sanity, not speed, and
# level 0 compiles fastest (level 1 ran the diffusion training module 184 -> 209 s, cold).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
TINY = dict(batch_size=16, steps=2, warmup=1, width=8, peak_size=128, data_examples=256, data_batches=3,
            compiler_options=FAST_COMPILE)
WITH_TORCH = ("dcgan_mnist", "wgan_gp_mnist", "stylegan2_mnist", "progan_mnist", "ldm_mnist", "pix2pix_edges2digits",
              "cyclegan_thin2thick")
# The models whose steps are not gan_step's (or are, with a mirror of their own): each runs on both sides.
OTHER_KINDS = ("progan_mnist", "ddpm_mnist", "ldm_mnist", "pix2pix_edges2digits", "cyclegan_thin2thick")
REQUIRED_KEYS = {
    "model", "batch_size", "d_steps", "steps_per_call", "dtype", "threads", "xla_cpu_threads", "compile_time_s",
    "step_time_median_s", "step_time_min_s", "step_time_max_s", "images_per_sec", "images_per_sec_definition",
    "flops_per_step", "xla_flops_per_call_compiled", "achieved_flops_per_sec", "peak_flops_per_sec", "fraction_of_peak",
    "memory", "param_count", "data_images_per_sec", "data_to_train_ratio", "machine", "spec"}
MACHINE_KEYS = {"cpu_model", "cpu_count", "device_kind", "platform", "python", "versions"}


def positive_finite(x):
  return x is not None and math.isfinite(x) and x > 0


def torch_reference():
  return pytest.importorskip("benchmarks.torch_reference")


def check_result(result, with_torch):
  """The figures every benchmark result must have, positive and consistent."""
  assert REQUIRED_KEYS <= set(result)
  for key in ("compile_time_s", "step_time_median_s", "step_time_min_s", "step_time_max_s", "images_per_sec",
              "flops_per_step", "achieved_flops_per_sec", "peak_flops_per_sec", "data_images_per_sec"):
    assert positive_finite(result[key]), (key, result[key])
  assert result["step_time_min_s"] <= result["step_time_median_s"] <= result["step_time_max_s"]
  expected = result["batch_size"] * result["d_steps"] / result["step_time_median_s"]
  assert result["images_per_sec"] == pytest.approx(expected, rel=1e-9)
  assert result["d_steps"] == (5 if result["model"] == "wgan_gp_mnist" else 1)
  parts = result["flops_per_step_parts"]
  if parts is None:
    # The step has no loops, so the pre-optimisation count matches XLA's compiled CPU count (the
    # compiled U-Net steps count 9-11 % more: operations that fusion duplicates, the dropout masks' bits).
    rel = 0.15 if result["spec"]["family"] in ("ddpm", "ldm") else 0.05
    assert result["flops_per_step"] == pytest.approx(result["xla_flops_per_call_compiled"], rel=rel)
  else:
    # Lazy R1: the mean of a step without R1 and one with it, weighted 15:1; the compiled step
    # counts its R1 branch in full, like the step that always runs it.
    (without_r1, with_r1) = parts
    assert with_r1["flops"] > 1.2 * without_r1["flops"]
    assert (without_r1["weight"], with_r1["weight"]) == (15 / 16, 1 / 16)
    assert without_r1["flops"] < result["flops_per_step"] < with_r1["flops"]
    assert result["flops_per_step"] == pytest.approx(
        without_r1["flops"] * 15 / 16 + with_r1["flops"] / 16, rel=1e-9)
    assert with_r1["flops"] == pytest.approx(result["xla_flops_per_call_compiled"], rel=0.1)
    # Timed alike: each kind of step's median, weighted as the FLOPs.
    plain_s, r1_s = result["step_time_parts_median_s"]
    # At these tiny sizes on shared cores either kind may time faster: only the bookkeeping is checked.
    assert plain_s == result["step_time_median_s"] and positive_finite(r1_s)  # no timed call fired R1
    assert result["step_time_interval_mean_s"] == pytest.approx(plain_s * 15 / 16 + r1_s / 16, rel=1e-9)
    if with_torch:
      torch_plain_s, torch_r1_s = result["torch"]["eager"]["step_time_parts_median_s"]
      assert torch_plain_s == result["torch"]["eager"]["step_time_median_s"] and positive_finite(torch_r1_s)
      assert result["jax_speedup_vs_torch"]["eager_interval_mean"] == pytest.approx(
          (torch_plain_s * 15 / 16 + torch_r1_s / 16) / result["step_time_interval_mean_s"], rel=1e-9)
  if parts is None:
    assert result["step_time_interval_mean_s"] is None
  assert result["memory"]["compiled_peak_bytes"] > 0
  assert MACHINE_KEYS <= set(result["machine"]) and result["machine"]["devices_measured"] == 1
  json.dumps(result)  # JSON-able as is
  if with_torch:
    torch_result = result["torch"]
    assert torch_result["param_count"] == result["param_count"]
    assert positive_finite(torch_result["eager"]["step_time_median_s"])
    assert torch_result["compiled"] == {"available": False, "reason": "not requested"}
    assert positive_finite(result["jax_speedup_vs_torch"]["eager"])
    assert torch_result["threads"] == result["threads"]


# dcgan_mnist runs through the entrypoint below (test_entrypoint_writes_json_with_machine_description);
# cgan and acgan share its step and are matched to their PyTorch mirrors by parameter count; dcgan_cifar10
# is dcgan_mnist's step at 32 px (its training runs in tests/train/test_gan_loop.py).
# ddpm_mnist runs the latent model's step without its encoder; both mirrors' shapes are checked below.
@pytest.mark.parametrize("model", ["mlp_gan_mnist", "wgan_gp_mnist", "stylegan2_mnist", "classifier", "progan_mnist",
                                   "ldm_mnist", "pix2pix_edges2digits", "cyclegan_thin2thick"])
def test_every_model_reports_sane_figures(model):
  reference = None
  if model in WITH_TORCH:
    reference = functools.partial(torch_reference().run_reference, compile_step=False)
  check_result(benchmark.run(benchmark.Options(model=model, **TINY), reference), reference is not None)


@pytest.mark.parametrize("d_steps, interval, firing", [(1, 16, {0, 16}), (5, 16, {0, 3, 6, 9, 12, 16, 19}),
                                                      (2, 4, set(range(0, 20, 2)))])
def test_r1_fires_on_the_steps_whose_discriminator_updates_hit_the_interval(d_steps, interval, firing):
  assert {s for s in range(20) if benchmark._fires_r1(s, d_steps, interval)} == firing


def test_without_time_parts_a_lazy_r1_step_keeps_its_flop_weighting_but_times_only_the_usual_step():
  result = benchmark.run(benchmark.Options(model="stylegan2_mnist", **TINY, time_parts=False))
  assert result["step_time_parts_median_s"] is None and result["step_time_interval_mean_s"] is None
  assert len(result["flops_per_step_parts"]) == 2


@pytest.mark.parametrize("model", benchmark.MODELS)
def test_jax_and_torch_models_have_equal_parameter_counts(model):
  opts = benchmark.Options(model=model, width=8)
  assert benchmark.jax_param_count(opts) == torch_reference().param_count(benchmark.build_target(opts).spec)


def test_default_width_parameter_counts_match():
  # The full-size plans too (w=64): e.g. DCGAN28 G has 7*7*256 stem units and 5x5 transposed convs.
  opts = benchmark.Options(model="acgan_mnist")
  assert benchmark.jax_param_count(opts) == torch_reference().param_count(benchmark.build_target(opts).spec)


def test_torch_compile_failure_is_reported_not_raised(monkeypatch):
  tr = torch_reference()

  def broken_compile(module):
    raise RuntimeError("no C++ compiler\nfound")

  monkeypatch.setattr(tr.torch, "compile", broken_compile)
  spec = {**benchmark.build_target(benchmark.Options(model="mlp_gan_mnist", **TINY)).spec, "threads": 1,
          "platform": "cpu"}
  result = tr.run_reference(spec, compile_step=True)
  assert positive_finite(result["eager"]["images_per_sec"])
  assert result["compiled"] == {"available": False, "reason": "RuntimeError: no C++ compiler found"}


@pytest.mark.parametrize("model", OTHER_KINDS)
def test_torch_mirrors_produce_the_flax_output_shapes(model):
  import torch  # pylint: disable=g-import-not-at-top
  tr = torch_reference()
  opts = benchmark.Options(model=model, width=8)
  target = benchmark.build_target(opts)
  spec, state = target.spec, jax.eval_shape(target.init_fn, jax.random.PRNGKey(0))
  modules = tr.build_models(spec)
  batch = benchmark.synthetic_batch(spec, (4,))
  nchw = lambda x: torch.as_tensor(np.moveaxis(np.asarray(x), -1, 1))
  shape = lambda x: tuple(x.shape)
  to_nhwc = lambda s: (s[0],) + tuple(s[2:]) + (s[1],)
  config = benchmark.load_config(model)
  if spec["family"] == "progan":
    gan = benchmark.step_targets.models.build_gan("progan", image_shape=spec["image_shape"], num_classes=10, width=8)
    z = np.zeros((4, spec["z_dim"]), np.float32)
    images = jax.eval_shape(lambda p: gan.generator.apply({"params": p}, z, batch["label"]), state.g_params)
    logits = jax.eval_shape(lambda p: gan.discriminator.apply({"params": p}, batch["image"], batch["label"])[0],
                            state.d_params)
    labels = torch.as_tensor(batch["label"]).long()
    assert to_nhwc(shape(modules["g"](torch.zeros(4, spec["z_dim"]), labels))) == images.shape
    assert shape(modules["d"](nchw(batch["image"]), labels)[0]) == logits.shape
    # The reals' fade-in, values: mid-fade, as the JAX step computes it for the phase.
    from benchmarks import torch_progan  # pylint: disable=g-import-not-at-top
    expected = gan.fade_reals(batch["image"], 0.3)
    got = torch_progan.fade_reals(nchw(batch["image"]), 0.3, spec["discriminator"]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  elif spec["family"] in ("ddpm", "ldm"):
    x = batch["image"]
    if spec["family"] == "ldm":  # the frozen encoder's latents, 7x7x4
      first_stage = benchmark.step_targets.kl_autoencoder.KLAutoencoder(tuple(spec["image_shape"]), 4, (4, 8))
      mean, _ = jax.eval_shape(lambda p: first_stage.apply({"params": p}, x, method=first_stage.encode),
                               state.first_stage["params"])
      torch_mean, _ = modules["encoder"](nchw(x))
      assert mean.shape == (4, 7, 7, 4) and to_nhwc(shape(torch_mean)) == mean.shape
      x = np.zeros(mean.shape, np.float32)
    config.widths = tuple(spec["denoiser"]["widths"])
    denoiser = benchmark.step_targets.diffusion_train.make_denoiser(config, 10, x.shape[-1])
    t = np.zeros((4,), np.int32)
    out = jax.eval_shape(lambda p: denoiser.apply({"params": p}, x, t, batch["label"]), state.params)
    got = modules["model"](nchw(x), torch.as_tensor(t).long(), torch.as_tensor(batch["label"]).long())
    assert out.shape == x.shape and to_nhwc(shape(got)) == out.shape
  else:
    config.width_g = config.width_d = 8
    translator = benchmark.step_targets.translation_train.build_translator(config, config.method, 32, (1, 1))
    for direction, module in translator.generators.items():
      source = batch[direction[0]]
      out = jax.eval_shape(lambda p: module.apply({"params": p}, source), state.g_params[direction])
      assert to_nhwc(shape(modules[f"g_{direction}"](nchw(source)))) == out.shape == batch[direction[1]].shape
    for domain, module in translator.critics.items():
      inputs = np.concatenate([batch["a"], batch[domain]], -1) if spec["conditional_critic"] else batch[domain]
      out = jax.eval_shape(lambda p: module.apply({"params": p}, inputs), state.d_params[domain])
      assert to_nhwc(shape(modules[f"d_{domain}"](nchw(inputs)))) == out.shape


def _compile(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


def _setup(model, abstract=False):
  target = benchmark.build_target(benchmark.Options(model=model, **TINY))
  key = jax.random.PRNGKey(0)
  state = jax.eval_shape(target.init_fn, key) if abstract else _compile(target.init_fn, key)(key)
  batches = [benchmark.synthetic_batch(target.spec, target.batch_lead, seed) for seed in (1, 2)]
  return target, state, batches


def test_steps_per_call_equals_consecutive_single_steps():
  # The classifier compiles in a fraction of a GAN's time; its step has the same
  # ingredients that must line up (a step counter folded into the dropout key, Adam).
  target, state, batches = _setup("classifier")
  single = _compile(target.step_fn, state, batches[0])
  expected, _ = single(state, batches[0])
  expected, expected_metrics = single(expected, batches[1])
  stacked = stack(batches)
  got, metrics = _compile(benchmark.scan_steps(target.step_fn, 2), state, stacked)(state, stacked)
  chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(metrics, expected_metrics, rtol=1e-5, atol=1e-6)
  assert int(got.step) == 2


def test_the_timed_steps_lowering_counts_the_flops_of_the_cpu_lowering():
  # _measure_jax takes a CPU step's FLOPs from the lowering it times, not from step_flops' own.
  target, state, batches = _setup("mlp_gan_mnist", abstract=True)
  mesh = parallel.make_mesh(jax.devices()[:1])
  abstract_batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.batch_sharding(
      mesh, len(target.batch_lead) - 1)), batches[0])
  abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)),
                                state)
  timed = parallel.data_parallel_jit(target.step_fn, mesh, batch_axis=len(target.batch_lead) - 1).lower(
      abstract_state, abstract_batch)
  flops = benchmark.step_flops(target.step_fn, state, batches[0])
  assert positive_finite(flops) and benchmark.cost_flops(timed) == pytest.approx(flops, rel=1e-6)


def _primitives(closed_jaxpr):
  names = set()
  for eqn in closed_jaxpr.jaxpr.eqns:
    names.add(eqn.primitive.name)
    names |= {n for sub in jax.extend.core.jaxprs_in_params(eqn.params)
              for n in _primitives(jax.extend.core.ClosedJaxpr(sub, ()))}
  return names


def test_gan_step_has_no_loops():
  target, state, batches = _setup("wgan_gp_mnist", abstract=True)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batches[0])
  # The step's d_steps updates are straight-line code: XLA:CPU ran the same updates 8x slower inside a scan.
  assert not {"scan", "while"} & _primitives(jax.make_jaxpr(target.step_fn)(state, batch))


def test_scan_steps_rejects_bad_arguments():
  target, state, batches = _setup("mlp_gan_mnist", abstract=True)
  with pytest.raises(ValueError, match="steps_per_call"):
    benchmark.scan_steps(target.step_fn, 0)
  with pytest.raises(ValueError, match="leading axes"):
    jax.eval_shape(benchmark.scan_steps(target.step_fn, 3), state, stack(batches))


@pytest.mark.parametrize("model", [m for m in benchmark.MODELS if m != "classifier"])
def test_benchmark_models_train_as_their_configs(model):
  config = benchmark.load_config(model)
  trained = importlib.import_module(f"experiments.configs.{model}").get_config()
  assert {k: config[k] for k in config} == {k: trained[k] for k in config}
  if benchmark.step_targets.kind(model) in benchmark.step_targets.models.FAMILIES:
    # Every setting of the GAN step that the training config has, but the options the benchmark leaves
    # out on purpose (augmentation and ADA: small-data options; reuse_fakes: a benchmark option).
    from gan_jax.train import gan_step  # pylint: disable=g-import-not-at-top
    left_out = {"augment", "reuse_fakes", "fade_start", "fade_steps"} | {k for k in trained if k.startswith("ada_")}
    defaults = {f.name: f.default for f in dataclasses.fields(gan_step.StepConfig)}
    step_fields = set(defaults) & set(trained) - left_out
    # What the benchmark's step uses (its config's value or the step's default) is what training uses.
    assert {k: config.get(k, defaults[k]) for k in step_fields} == {k: trained[k] for k in step_fields}


def stack(batches):
  return jax.tree.map(lambda *xs: np.stack(xs), *batches)


@pytest.mark.parametrize("field, value, match", [
    ("model", "dcgan_svhn", "Unknown model 'dcgan_svhn'; choose one of: mlp_gan_mnist"),
    ("dtype", "float16", "Unknown dtype 'float16'; choose one of: float32, bfloat16"),
    ("upsample_impl", "nearest", "Unknown upsample_impl 'nearest'; choose one of: auto, transpose, subpixel"),
    ("steps", 0, "steps must be a positive integer"),
])
def test_bad_options_raise_one_line_errors(field, value, match):
  opts = benchmark.Options(**{"model": "dcgan_mnist", field: value})
  with pytest.raises(ValueError, match=match):
    benchmark.validate_options(opts)


class _FakeCompiled:

  def __init__(self, cost):
    self._cost = cost

  def cost_analysis(self):
    return self._cost


@pytest.mark.parametrize("cost, flops", [({"flops": 12.0}, 12.0), ([{"flops": 7.0}], 7.0), (None, None), ([], None),
                                         ({"flops": -1.0}, None), ({}, None)])
def test_cost_flops_handles_every_return_shape(cost, flops):
  assert benchmark.cost_flops(_FakeCompiled(cost)) == flops


def _run_python(*args, timeout=180):
  # One CPU device and fast compilation (see FAST_COMPILE) for the child process.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["GAN_JAX_TEST_COMPILE_FLAGS"]}
  return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                        env=env)


def test_entrypoint_writes_json_with_machine_description(tmp_path):
  out = tmp_path / "bench.json"
  proc = _run_python("-m", "experiments.benchmark", "--model=dcgan_mnist", "--batch_size=16", "--steps=2",
                     "--warmup=1", "--width=8", "--peak_size=128", "--data_batches=3", "--reference=torch",
                     "--notorch_compile", f"--json={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "images/s" in proc.stdout and "torch eager" in proc.stdout
  result = json.loads(out.read_text())
  check_result(result, with_torch=True)
  assert result["machine"]["device_count"] == 1
  # The entrypoint adds the project's XLA:CPU default to the caller's flags and records both.
  assert result["machine"]["xla_flags"] == common.xla_flags_with_cpu_defaults(
      os.environ["GAN_JAX_TEST_COMPILE_FLAGS"], False, common.jaxlib_version())


def test_entrypoint_rejects_unknown_model_in_one_line():
  proc = _run_python("-m", "experiments.benchmark", "--model=biggan")
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: Unknown model 'biggan'; choose one of: " + ", ".join(benchmark.MODELS)]


def test_library_imports_without_tensorflow_or_torch():
  # None in sys.modules makes any `import tensorflow` fail, as on a machine without it.
  code = ("import sys; sys.modules['tensorflow'] = None; import benchmarks.step_benchmark, benchmarks.layer_benchmark; "
          "import gan_jax.train.gan_loop, gan_jax.protocols.imbalance.pipeline, gan_jax.checkpoint; "
          "assert 'torch' not in sys.modules, 'the benchmark imported torch'")
  proc = _run_python("-c", code)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_input_pipeline_rate_is_positive():
  spec = benchmark.build_target(benchmark.Options(model="wgan_gp_mnist", **TINY)).spec
  rate = benchmark.data_images_per_sec(spec, num_examples=256, num_batches=2, device=jax.devices()[0])
  assert positive_finite(rate)


def test_reuse_fakes_runs_on_both_sides_and_costs_fewer_flops():
  reference = functools.partial(torch_reference().run_reference, compile_step=False)
  reused = benchmark.run(benchmark.Options(model="dcgan_mnist", reuse_fakes=True, **TINY), reference)
  check_result(reused, with_torch=True)
  assert reused["reuse_fakes"] and reused["spec"]["reuse_fakes"]
  fresh_target = benchmark.build_target(benchmark.Options(model="dcgan_mnist", **TINY))
  state = jax.eval_shape(fresh_target.init_fn, jax.random.PRNGKey(0))
  batch = benchmark.synthetic_batch(fresh_target.spec, fresh_target.batch_lead)
  assert reused["flops_per_step"] < benchmark.step_flops(fresh_target.step_fn, state, batch)
  with pytest.raises(ValueError, match="reuse_fakes applies to the GAN models"):
    benchmark.validate_options(benchmark.Options(model="classifier", reuse_fakes=True))
