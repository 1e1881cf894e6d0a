"""The translate entrypoint's driver: train pix2pix or CycleGAN, then measure the test error.

Stages (`gan_jax.stages`), each in `<workdir>/stages/<name>/` with its checkpoints,
metrics.jsonl, TensorBoard events and sample grids; result.json marks it done:

* `<method>`: the configured method on the task's training data;
* `pix2pix_true_pairs` (unpaired tasks with a known answer, `config.upper_bound`): pix2pix
  on the true pairs of the same A images, the bound an unpaired method can approach.

Then results.json and results.md: the test L1 and SSIM (against the true B) of every
trained model and of the identity map (output = input), and `translations.png`
(input | output | truth per row, plus A -> B -> A for CycleGAN).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gan_jax import batching
from gan_jax import checks
from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import losses
from gan_jax import parallel
from gan_jax import preemption
from gan_jax import stages as stages_lib
from gan_jax import workdir as workdir_lib
from gan_jax.data import device_dataset
from gan_jax.data import sources
from gan_jax.models import translation as nets
from gan_jax.train import loop
from gan_jax.train import nonfinite
from gan_jax.translation import data as data_lib
from gan_jax.translation import quality
from gan_jax.translation import step as step_lib

VALUE_RANGE = (-1.0, 1.0)
STAGES_DIR = "stages"
STAGE_RESULT = "result.json"
UPPER_BOUND = "pix2pix_true_pairs"
OUTPUTS = (STAGES_DIR, "results.json", "results.md", "translations.png")
RESUMABLE_FIELDS = ("log_every", "checkpoint_every", "sample_every", "keep_checkpoints", "eval_batch_size")
POSITIVE_FIELDS = ("batch_size", "num_steps", "log_every", "checkpoint_every", "sample_every", "keep_checkpoints",
                   "eval_batch_size", "width_g", "width_d")
# Fields of the training of one model: a stage is redone when its fingerprint changes.
# (The objective's fields enter through `objective_for`, which the paired bound does not take from the config.)
TRAINING_FIELDS = ("generator", "batch_size", "num_steps", "decay_steps", "lr", "b1", "b2", "width_g", "width_d",
                   "patch_size", "dropout_blocks", "num_blocks", "pool_size", "jitter", "flip", "eval_dropout", "seed")
DATA_FIELDS = ("data", "dataset", "direction", "image_size", "channels", "train_examples", "test_examples", "thicken")
DIRECTIONS = ("AtoB", "BtoA")
_GRID_ROWS = 8
_B_ORDER_TAG = 0xB0  # domain B's batch order differs from A's when the domains are unpaired


def build_translator(config: ml_collections.ConfigDict, method: str, side: int, channels: tuple[int, int]):
  return step_lib.build_translator(
      method, side=side, channels_a=channels[0], channels_b=channels[1],
      generator=config.generator if method == config.method else "", width_g=config.width_g,
      width_d=config.width_d, patch_size=config.patch_size, dropout_blocks=config.dropout_blocks,
      num_blocks=config.num_blocks)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Every field that does not need the data, checked before anything is read or trained."""
  step_lib.get_method(config.method)
  checks.one_of(config.generator, ("",) + step_lib.GENERATORS, "generator")
  checks.one_of(config.loss, sorted(losses.ADVERSARIAL_LOSSES), "loss")
  checks.one_of(config.on_nonfinite, nonfinite.POLICIES, "on_nonfinite")
  checks.all_positive(config, POSITIVE_FIELDS)
  nets.patch_num_layers(config.patch_size)
  for field in ("lr", "gan_weight"):
    checks.positive_number(config[field], field)
  for field in ("l1_weight", "cycle_weight", "identity_weight", "decay_steps", "pool_size", "dropout_blocks",
                "num_blocks", "train_examples", "test_examples", "image_size"):
    checks.non_negative(config[field], field)
  checks.positive(config.thicken, "thicken")
  checks.one_of(config.channels, (0, 1, 3), "channels")
  checks.one_of(config.direction, DIRECTIONS, "direction")
  for field in ("jitter", "flip", "eval_dropout", "upper_bound"):
    checks.one_of(config[field], (True, False), field)
  if config.decay_steps > config.num_steps:
    raise ValueError(f"decay_steps={config.decay_steps} exceeds num_steps={config.num_steps}")
  if config.batch_size % num_devices:
    raise ValueError(f"batch_size={config.batch_size} is not divisible by the number of devices ({num_devices}); "
                     f"use a multiple of {num_devices}")
  data_lib.check_source(config)
  if str(config.data) in data_lib.DIGIT_TASKS:
    build_translator(config, config.method, config.image_size or 32, (1, 1))  # sizes known before reading


def objective_for(config: ml_collections.ConfigDict, method: str) -> step_lib.Objective:
  """The configured objective for the configured method; pix2pix's published one for the paired bound."""
  if method == config.method:
    return step_lib.Objective(config.loss, config.gan_weight, config.l1_weight, config.cycle_weight,
                              config.identity_weight)
  return step_lib.Objective()  # the paired bound trains with pix2pix's published weights


def _to_model(images: np.ndarray) -> np.ndarray:
  return sources.scale_images(images, VALUE_RANGE)


def make_translate_fn(translator: step_lib.Translator, direction: str, batch_size: int,
                      dropout_key: jax.Array | None = None):
  """`fn(g_params, uint8 images) -> uint8 translations` in fixed-size jitted chunks.

  Without `dropout_key` the generator runs deterministically (dropout off); with it, the
  U-Net's dropout stays on as pix2pix's reference runs it at test time, chunk i drawing
  from fold_in(dropout_key, i).
  """
  train = dropout_key is not None
  apply = jax.jit(lambda params, x, key: step_lib.translate(translator, params, direction, x, train=train, key=key))
  key = dropout_key if train else jax.random.PRNGKey(0)

  def fn(g_params, images: np.ndarray) -> np.ndarray:
    scaled = _to_model(images)
    out = batching.map_chunks(lambda i, rows: apply(g_params, scaled[rows], jax.random.fold_in(key, i)), len(images),
                              batch_size)
    return images_lib.to_uint8(out, VALUE_RANGE)

  return fn


def _rgb_if_mixed(columns: list[np.ndarray]) -> list[np.ndarray]:
  if len({c.shape[-1] for c in columns}) == 1:
    return columns
  return [np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 else c for c in columns]


def save_translation_grid(path: str, columns: list[np.ndarray]) -> None:
  """One row per example, one column per array of `columns` (uint8 [R, H, W, C] each)."""
  columns = _rgb_if_mixed(columns)
  rows = len(columns[0])
  tiles = np.stack(columns, axis=1).reshape((-1,) + columns[0].shape[1:])
  images_lib.save_grid(path, tiles.astype(np.float32) / 255.0, rows, len(columns))


def make_translate_fns(translator: step_lib.Translator, batch_size: int,
                       dropout_key: jax.Array | None = None) -> dict:
  """{direction: `make_translate_fn`} for every generator, each compiled once and reused for every grid."""
  return {d: make_translate_fn(translator, d, batch_size, dropout_key) for d in translator.generators}


def grid_columns(translate_fns: dict, g_params, inputs: np.ndarray, truth: np.ndarray | None) -> list[np.ndarray]:
  """[input, A -> B, (A -> B -> A for CycleGAN), (the true B)] for a few test inputs."""
  forward = translate_fns["ab"](g_params, inputs)
  columns = [inputs, forward]
  if "ba" in translate_fns:
    columns.append(translate_fns["ba"](g_params, forward))
  if truth is not None:
    columns.append(truth)
  return columns


def fit(config: ml_collections.ConfigDict, translator: step_lib.Translator, objective: step_lib.Objective,
        train_a: np.ndarray, train_b: np.ndarray, workdir: str, *, seed: int, name: str,
        preview: tuple[np.ndarray, np.ndarray | None]) -> loop.LoopResult:
  """Trains (or resumes) one translator in `workdir` until config.num_steps.

  Paired methods draw row i of A with row i of B; unpaired ones draw each domain in
  its own order. Batches are a pure function of (seed, step), so resume is exact.
  """
  mesh = parallel.make_mesh()
  # One stateless transformation for both players; each keeps its own optimizer state.
  g_tx = d_tx = step_lib.make_optimizer(config.lr, config.b1, config.b2, config.num_steps, config.decay_steps)
  init = jax.jit(lambda key: step_lib.init_state(translator, g_tx, d_tx, key, config.pool_size),
                 out_shardings=parallel.replicated(mesh))
  jitter = step_lib.Jitter(config.jitter, config.flip)
  train_step = parallel.data_parallel_jit(step_lib.make_train_step(translator, objective, g_tx, d_tx, jitter), mesh,
                                          batch_axis=1)
  zeros = lambda images: np.zeros((len(images),), np.int32)
  if translator.method.paired:
    if len(train_a) != len(train_b):
      raise ValueError(f"{name}: {len(train_a)} A images but {len(train_b)} B images; a paired method needs pairs")
    both = device_dataset.DeviceDataset(np.concatenate([train_a, train_b], axis=-1), zeros(train_a), mesh,
                                        VALUE_RANGE)
    split = translator.channels["a"]

    def batches(step):
      images = both.batches([step], config.batch_size, seed)["image"]
      return {"a": images[..., :split], "b": images[..., split:]}
  else:
    data_a = device_dataset.DeviceDataset(train_a, zeros(train_a), mesh, VALUE_RANGE)
    data_b = device_dataset.DeviceDataset(train_b, zeros(train_b), mesh, VALUE_RANGE)

    def batches(step):
      return {"a": data_a.batches([step], config.batch_size, seed)["image"],
              "b": data_b.batches([step], config.batch_size, seed ^ _B_ORDER_TAG)["image"]}

  metric_names: list[str] = []

  def step_fn(state, step):
    state, metrics = train_step(state, batches(step))
    metric_names[:] = metric_names or [k for k in metrics if k != "nonfinite"]
    return state, metrics

  preview_fns = make_translate_fns(translator, config.eval_batch_size, eval_dropout_key(config))

  def save_samples(state, done):
    columns = grid_columns(preview_fns, state.g_params, preview[0], preview[1])
    save_translation_grid(fs.join(workdir, "samples", f"step_{done:08d}.png"), columns)

  return loop.train(
      init(jax.random.PRNGKey(seed)), step_fn, num_steps=config.num_steps, name=name, log_every=config.log_every,
      checkpoint_dir=fs.join(workdir, "checkpoints"), checkpoint_every=config.checkpoint_every,
      keep_checkpoints=config.keep_checkpoints, metrics_dir=workdir, images_per_step=config.batch_size,
      describe=lambda s: f"g_loss={s['g_loss']:.4f} d_loss={s['d_loss']:.4f} {s['images_per_sec']:.0f} img/s",
      check=nonfinite.health_check(config.on_nonfinite, metric_names), nonfinite_hint=nonfinite.HINT,
      periodic=[loop.Periodic(config.sample_every, save_samples)],
      # Steps queued without limit can starve XLA:CPU's all-reduce rendezvous under many fake
      # devices (a "Termination timeout" abort, seen with the CycleGAN step); one step ahead suffices.
      one_in_flight=True)


class _Stage:
  """Trains one method in its folder, translates the test set and returns its errors."""

  def __init__(self, config, method: str, data: data_lib.TranslationData, train: tuple[np.ndarray, np.ndarray],
               folder: str):
    self.config, self.method, self.data, self.train, self.folder = config, method, data, train, folder

  def __call__(self) -> dict:
    config, data = self.config, self.data
    translator = build_translator(config, self.method, data.side, data.channels)
    name = fs.basename(self.folder)
    truth = data.test_b[:_GRID_ROWS] if data.test_paired else None
    start = time.perf_counter()
    fitted = fit(config, translator, objective_for(config, self.method), *self.train, self.folder,
                 seed=config.seed, name=name, preview=(data.test_a[:_GRID_ROWS], truth))
    if fitted.stopped:
      raise stages_lib.StageStopped(f"Stopped by {fitted.stopped_by} in stage {name}")
    translate_fns = make_translate_fns(translator, config.eval_batch_size, eval_dropout_key(config))
    translated = translate_fns["ab"](fitted.state.g_params, data.test_a)
    result: dict[str, Any] = {"method": self.method, "steps": int(config.num_steps),
                              "train_examples": [int(len(self.train[0])), int(len(self.train[1]))],
                              "train_seconds_this_process": round(time.perf_counter() - start, 1),
                              "final_train": fitted.last_record}
    if data.test_paired:
      result.update(quality.summary(translated, data.test_b))
    if jax.process_index() == 0:
      columns = grid_columns(translate_fns, fitted.state.g_params, data.test_a[:_GRID_ROWS], truth)
      save_translation_grid(fs.join(self.folder, "translations.png"), columns)
    logging.info("[%s] test %s", name, ", ".join(f"{k} {result[k]:.4f}" for k in ("l1", "ssim") if k in result))
    return result


def eval_dropout_key(config: ml_collections.ConfigDict) -> jax.Array | None:
  """The test-time dropout key when config.eval_dropout keeps the U-Net's dropout on, else None."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), 0xE7A1) if config.eval_dropout else None


def stage_fingerprint(config: ml_collections.ConfigDict, method: str) -> dict:
  """What a stage's result depends on: its method, the objective it trains with, training and data fields."""
  values = workdir_lib.config_to_dict(config)
  return {"method": method, "objective": dataclasses.asdict(objective_for(config, method)),
          **{k: values[k] for k in TRAINING_FIELDS + DATA_FIELDS}}


def identity_baseline(data: data_lib.TranslationData) -> dict | None:
  """Test errors of output = input (None when A and B differ in channels or the truth is unknown)."""
  if not data.test_paired or data.test_a.shape != data.test_b.shape:
    return None
  return quality.summary(data.test_a, data.test_b)


def markdown(results: dict) -> str:
  """results.md: one row per model and the identity baseline."""
  lines = [f"# {results['method']} on {results['data']}", ""]
  if results.get("command"):
    lines += ["Command:", "", "```bash", results["command"], "```", ""]
    if results.get("git_commit"):
      lines += [f"git commit {results['git_commit']}", ""]
  if not results["test_paired"]:
    lines += ["The test set has no true translations, so no test error is computed; see translations.png.", ""]
    return "\n".join(lines) + "\n"
  lines += [f"Test set: {results['test_examples']} images; L1 on the [0, 1] scale (lower is better), "
            "SSIM (higher is better), both against the true B.", "",
            "| model | test L1 | test SSIM | train steps | train time (s) |", "|---|---|---|---|---|"]
  for name, record in results["models"].items():
    lines.append(f"| {name} | {record['l1']:.4f} | {record['ssim']:.4f} | {record['steps']} | "
                 f"{record['train_seconds_this_process']} |")
  if results["identity"] is not None:
    lines.append(f"| identity (output = input) | {results['identity']['l1']:.4f} | "
                 f"{results['identity']['ssim']:.4f} | - | - |")
  return "\n".join(lines) + "\n"


def run_translation(config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None = None,
                    overwrite: bool = False, provenance: dict | None = None) -> dict[str, Any]:
  """Checks the config, loads the data, runs (or resumes) every stage, writes the reports.

  Returns:
    results.json's content; {'stopped': True} when a signal interrupted a stage.
  """
  mesh = parallel.make_mesh()
  validate(config, mesh.size)
  data = data_lib.load(config, idx_dir)
  method = step_lib.get_method(config.method)
  for name in [config.method] + ([UPPER_BOUND] if data.true_pairs is not None and config.upper_bound else []):
    build_translator(config, "pix2pix" if name == UPPER_BOUND else name, data.side, data.channels)
  if method.paired and not data.paired:
    raise ValueError(f"{config.data} is unpaired; {config.method} needs pairs (use method=cyclegan)")
  is_writer = jax.process_index() == 0
  if is_writer:
    workdir_lib.prepare(workdir, config, overwrite=overwrite, outputs=OUTPUTS, resumable_fields=RESUMABLE_FIELDS)
  plan = []
  runs = [(config.method, config.method, (data.train_a, data.train_b))]
  if data.true_pairs is not None and config.upper_bound:
    runs.append((UPPER_BOUND, "pix2pix", data.true_pairs))
  for stage_name, stage_method, train in runs:
    folder = fs.join(workdir, STAGES_DIR, stage_name)
    plan.append(stages_lib.Stage(stage_name, fs.join(folder, STAGE_RESULT),
                                 _Stage(config, stage_method, data, train, folder), work=config.num_steps,
                                 fingerprint=stage_fingerprint(config, stage_method), folder=folder))
  runner = stages_lib.Runner(plan, writer=is_writer)
  with preemption.StopSignal() as stop:
    if not runner.run(stop):
      return {"stopped": True}
  records = {s.name: stages_lib.load_payload(s.marker) for s in plan}
  results = {
      "data": data.name, "dataset": config.dataset if str(config.data) in data_lib.DIGIT_TASKS else None,
      "method": config.method, "test_paired": data.test_paired, "test_examples": int(len(data.test_a)),
      "image_shape": list(data.train_a.shape[1:3]), "channels": list(data.channels),
      "identity": identity_baseline(data),
      "models": {n: {k: v for k, v in r.items() if k != "fingerprint"} for n, r in records.items()},
      "stages_computed": sorted(runner.computed), "stages_cached": sorted(runner.cached),
      **(provenance or {}),
  }
  if is_writer:
    fs.write_text(fs.join(workdir, "results.md"), markdown(results))
    main_folder = fs.join(workdir, STAGES_DIR, config.method)
    fs.write_bytes(fs.join(workdir, "translations.png"), fs.read_bytes(fs.join(main_folder, "translations.png")))
    fs.write_json(fs.join(workdir, "results.json"), results)
  return results
