"""Images from a trained generator, without training: any GAN family run or a (conditional) VAE run.

`load(workdir)` reads the run's config.json and latest checkpoint; `export` writes the
images as an image folder (`<out>/<class name>/<index>.png`, so any other tool, or
`--config.dataset=folder:<out>`, can read them) or as one `.npz`. Class names and the
image shape come from the run's `data/classes.json` (or, for a generator trained inside
the imbalance benchmark, from the benchmark's folder above it).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from gan_jax import batching
from gan_jax import checkpoint
from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax import models
from gan_jax import parallel
from gan_jax.data import sources
from gan_jax.data import splits
from gan_jax.train import gan_loop
from gan_jax.train import vae_loop
from gan_jax.train import vae_step

FORMATS = ("png", "npz")
VAE_MODELS = ("vae", "cvae")
# How many folders above a run its data/classes.json may sit: <benchmark>/generators/<name>[/class_<c>].
_CLASS_FILE_LEVELS = 3


class SampleError(ValueError):
  """A run folder that cannot be sampled (the message names it and what is missing)."""


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
  """A generator restored from a run folder.

  Attributes:
    model: the run's model name.
    class_names: name of each label of the data set.
    image_shape: (H, W, C).
    classes: the labels it generates: every class for a conditional model, the trained
      classes for an unconditional one (one class, or all of them pooled).
    conditional: whether labels choose the class.
    draw: (key, labels [N], truncation) -> uint8 images [N, H, W, C].
  """
  model: str
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  classes: tuple[int, ...]
  conditional: bool
  draw: Callable[[jax.Array, np.ndarray, float], np.ndarray]


def _run_config(workdir: str) -> ml_collections.ConfigDict:
  path = fs.join(workdir, "config.json")
  if not fs.exists(path):
    raise SampleError(f"{workdir} has no config.json: not a run folder (give the --workdir of a train_gan or "
                      f"train_vae run, or <benchmark>/generators/<name>)")
  return ml_collections.ConfigDict(fs.read_json(path))


def _data_facts(workdir: str, config: ml_collections.ConfigDict) -> tuple[tuple[str, ...], tuple[int, int, int]]:
  """(class names, image shape) of the data a run trained on."""
  folder = fs.absolute(workdir)
  for _ in range(_CLASS_FILE_LEVELS + 1):
    path = fs.join(splits.data_dir(folder), splits.CLASS_NAMES_FILE)
    if fs.exists(path):
      facts = fs.read_json(path)
      return tuple(facts["class_names"]), tuple(facts["image_shape"])
    parent = fs.dirname(folder.rstrip("/"))
    if not parent or parent == folder:  # the root: nothing above
      break
    folder = parent
  if "dataset" in config:  # a run from before classes.json was written: its built-in data set
    info = sources.get_dataset_info(sources.DataSource.from_config(config))
    return info.class_names, info.image_shape
  raise SampleError(f"{workdir} records no data set (no data/classes.json here or in the folders above it)")


def _check_checkpoint(workdir: str) -> None:
  folder = fs.join(workdir, "checkpoints")
  if not any(name.isdigit() for name in fs.listdir(folder)):
    raise SampleError(f"{workdir} has no checkpoint in {folder}; train it first (a rerun of its command resumes)")


def _gan(config, workdir, class_names, image_shape) -> TrainedGenerator:
  num_classes = len(class_names)
  family = models.get_family(config.model)
  sample = gan_loop.load_generator(config, workdir, image_shape=image_shape, num_classes=num_classes)
  trained = gan_loop.parse_train_classes(config.get("train_classes", ""), num_classes)
  classes = tuple(range(num_classes)) if family.conditional else tuple(trained or ())
  return TrainedGenerator(config.model, class_names, image_shape, classes, family.conditional,
                          lambda key, labels, truncation: sample(key, labels, truncation=truncation))


def _vae(config, workdir, class_names, image_shape) -> TrainedGenerator:
  num_classes = len(class_names)
  programs = vae_loop.build_programs(config, parallel.make_mesh(), model=config.model, image_shape=image_shape,
                                     num_classes=num_classes)
  ckpt = checkpoint.Checkpointer(fs.join(workdir, "checkpoints"), async_save=False)
  try:
    params = ckpt.restore(programs.init(vae_step.make_key(config.get("seed", 0)))).params
  finally:
    ckpt.close()
  generate = jax.jit(programs.model.generate, static_argnums=3)

  def draw(key, labels, truncation):
    fake = batching.map_chunks(lambda index, rows: generate(params, labels[rows], jax.random.fold_in(key, index),
                                                            float(truncation)), len(labels), 500)
    return images_lib.to_uint8(fake, (0.0, 1.0))

  conditional = config.model == "cvae"
  return TrainedGenerator(config.model, class_names, image_shape, tuple(range(num_classes)) if conditional else (),
                          conditional, draw)


def load(workdir: str) -> TrainedGenerator:
  """The generator of a run folder, at its latest checkpoint.

  Raises:
    SampleError: no config.json, no checkpoint, a model that cannot generate, or no record of the data.
  """
  config = _run_config(workdir)
  model = config.get("model", "")
  if model not in models.GAN_MODELS and model not in VAE_MODELS:
    allowed = ", ".join(list(models.GAN_MODELS) + list(VAE_MODELS))
    raise SampleError(f"{workdir} holds a '{model}' run, which cannot generate images; sample supports: {allowed}")
  _check_checkpoint(workdir)
  class_names, image_shape = _data_facts(workdir, config)
  build = _gan if model in models.GAN_MODELS else _vae
  return build(config, workdir, class_names, tuple(int(s) for s in image_shape))


def benchmark_filter(benchmark: str, generator: TrainedGenerator) -> tuple[Callable[[np.ndarray, int], np.ndarray],
                                                                            float, int]:
  """The confidence filter of an imbalance benchmark run: (images, class) -> probability, its threshold and rounds.

  Raises:
    SampleError: the folder is not a finished benchmark run, or its images differ from the generator's.
  """
  from gan_jax.protocols.imbalance import classifiers as classifiers_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.protocols.imbalance import layout as layout_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.protocols.imbalance import methods as methods_lib  # pylint: disable=g-import-not-at-top
  from gan_jax.train import classifier_loop  # pylint: disable=g-import-not-at-top
  config = _run_config(benchmark)
  path = layout_lib.Layout(benchmark).filter
  if "classifier" not in config or not fs.exists(path):
    raise SampleError(f"{benchmark} has no filter classifier ({path}); give the --workdir of an imbalance benchmark "
                      f"run that trained one (filter_confidence > 0 and a generative method)")
  _, shape = _data_facts(benchmark, config)
  if tuple(shape) != generator.image_shape:
    raise SampleError(f"{benchmark}'s filter reads {list(shape)} images, the generator draws "
                      f"{list(generator.image_shape)}")
  programs = classifiers_lib.Classifiers(config, len(generator.class_names), generator.image_shape,
                                         parallel.make_mesh()).plain
  variables = classifier_loop.read_variables(path, jax.device_get(programs.init(jax.random.PRNGKey(0)).variables()))
  confidence = lambda images, c: classifier_loop.predict(programs, variables, images)[0][:, c]
  # config.json is read without the benchmark's migrations: older runs have no filter_rounds.
  return confidence, float(config.filter_confidence), int(config.get("filter_rounds", methods_lib.FILTER_ROUNDS))


def parse_classes(value: str, generator: TrainedGenerator) -> tuple[int, ...]:
  """'' (every class the generator has) or '7,8,9'; SampleError for a class it cannot generate."""
  if not generator.conditional:
    if value:
      raise SampleError(f"{generator.model} is unconditional (trained on classes {list(generator.classes) or 'all'}); "
                        f"drop --classes")
    return generator.classes[:1] if len(generator.classes) == 1 else ()
  wanted = tuple(int(c) for c in str(value).split(",") if c.strip()) if value else generator.classes
  bad = [c for c in wanted if c not in generator.classes]
  if bad:
    raise SampleError(f"--classes={value}: class {bad[0]} is not one of {generator.model}'s classes "
                      f"0..{len(generator.class_names) - 1}")
  return wanted


def export(generator: TrainedGenerator, out: str, *, num_per_class: int, classes: Sequence[int], seed: int = 0,
           truncation: float = 0.0, fmt: str = "png",
           confidence: Callable[[np.ndarray, int], np.ndarray] | None = None, threshold: float = 0.0,
           max_rounds: int | None = None) -> dict:
  """Draws `num_per_class` images per class and writes them to `out`.

  Args:
    generator: from `load`.
    out: a folder (png: `<out>/<class name>/<index>.png`) or an .npz path (npz: image, label, class_names).
    num_per_class: images per class.
    classes: the labels to draw (empty for an unconditional generator trained on several classes:
      `num_per_class` images, written under `unconditional/`).
    seed: the draws are `fold_in(PRNGKey(seed), class)`, so a class's images do not depend on the others.
    truncation: > 0 draws the latents from N(0, 1) truncated to [-truncation, truncation].
    fmt: one of FORMATS.
    confidence: optional (images, class) -> probability of the class; with `threshold` > 0 an image is
      kept only at or above it (the imbalance benchmark's filter, see `methods.sample_with_filter`).
    threshold: see `confidence`.
    max_rounds: rounds of redrawing before the best-scoring rejects fill a class (None: the
      benchmark's default, `methods.FILTER_ROUNDS`).

  Returns:
    {'written': {name: count}, 'acceptance_rate': [...] or None}.
  """
  from gan_jax.protocols.imbalance import methods as methods_lib  # pylint: disable=g-import-not-at-top
  if fmt not in FORMATS:
    raise SampleError(f"Unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}")
  targets = list(classes) or [-1]
  names = [generator.class_names[c] if c >= 0 else "unconditional" for c in targets]
  key = jax.random.PRNGKey(seed)
  rounds = {c: 0 for c in targets}

  def sample(slot: int, n: int) -> np.ndarray:
    c = targets[slot]
    rounds[c] += 1
    labels = np.full(n, max(c, 0), np.int32)
    return generator.draw(jax.random.fold_in(jax.random.fold_in(key, max(c, 0)), rounds[c]), labels, truncation)

  score = None
  if confidence is not None and threshold > 0 and targets != [-1]:
    score = lambda images, slot: confidence(images, targets[slot])
  drawn, slots, info = methods_lib.sample_with_filter(sample, [num_per_class] * len(targets), score, threshold,
                                                      max_rounds=max_rounds or methods_lib.FILTER_ROUNDS)
  if fmt == "npz":
    labels = np.asarray([targets[s] for s in slots], np.int32)
    fs.save_npz(out, image=drawn, label=labels, class_names=np.asarray(generator.class_names, dtype=str))
  else:
    for slot, name in enumerate(names):
      for i, image in enumerate(drawn[slots == slot]):
        fs.save_png(fs.join(out, name, f"{i:05d}.png"), image)
  return {"written": {name: int(np.sum(slots == s)) for s, name in enumerate(names)},
          "acceptance_rate": info["acceptance_rate"] if score is not None else None}

