"""The generators of the imbalance benchmark, one record each: check, train, and draw images of a class.

A generator is trained on the arrays the benchmark hands it (the imbalanced
training set, or one class of it) with its own config section
(`config.generators.<name>`: model and training fields only; the data set,
profile and seed belong to the benchmark). `ConditionalGAN` and
`ConditionalVAE` and `ConditionalDiffusion` are one model on the whole set; `PerClassGAN` trains one
unconditional model per class that needs images, on that class alone (one after another, or the
classes of one batch size as one vmapped program where that is faster).
Training runs are cached stages with a `done.json` marker; a stopped one
resumes from its checkpoints.
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
from gan_jax import parallel
from gan_jax import stages
from gan_jax.data import batch_order
from gan_jax.diffusion import train as diffusion_train
from gan_jax.protocols.imbalance import layout as layout_lib
from gan_jax.train import gan_loop
from gan_jax.train import stacked_gan_loop
from gan_jax.train import vae_loop
from gan_jax.train import vae_step

SAMPLE_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class ClassGenerator:
  """A trained generative method.

  Attributes:
    generate: (class, n, key) -> uint8 images [n, H, W, C] of that class.
    classes: the classes it can generate.
  """
  generate: Callable[[int, int, jax.Array], np.ndarray]
  classes: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Data:
  """What a generator trains on: the imbalanced set and the run's facts."""
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  seed: int
  num_devices: int
  # Per-class models of one batch size train as one vmapped program (stacked_gan_loop).
  stack_classes: bool = False

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])


def _stopped(record: dict, folder: str) -> None:
  if "stopped_by" in record:
    raise stages.StageStopped(f"Stopped by {record['stopped_by']} while training {folder}")


class ConditionalGAN:
  """One class-conditional GAN (cgan, acgan, stylegan2, progan) on the whole imbalanced set."""
  per_class = False

  def __init__(self, name: str):
    self.name = name

  def validate(self, section: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
               num_devices: int, prefix: str) -> None:
    if section.model != self.name:
      raise ValueError(f"config.{prefix}model must be '{self.name}' (the method decides it), got {section.model!r}")
    gan_loop.validate_training(section, image_shape, num_classes, num_devices, prefix)

  def work(self, section: ml_collections.ConfigDict) -> float:
    return float(section.num_steps * section.d_steps * 2)

  def stages(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
             classes: Sequence[int]) -> list[stages.Stage]:
    del classes
    folder = layout.generator(self.name)

    def fit():
      record = gan_loop.fit_gan(section, data.images, data.labels, folder, num_classes=data.num_classes,
                                seed=data.seed, name=self.name)
      _stopped(record, folder)
      return record

    return [stages.Stage(f"generator {self.name}", layout.generator_done(self.name), fit, self.work(section))]

  def load(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
           classes: Sequence[int]) -> ClassGenerator:
    del classes
    sample = gan_loop.load_generator(section, layout.generator(self.name), image_shape=data.image_shape,
                                     num_classes=data.num_classes)
    return ClassGenerator(lambda c, n, key: sample(key, np.full(n, c, np.int32)), tuple(range(data.num_classes)))


def class_batch_size(batch_size: int, class_size: int, num_devices: int) -> int:
  """A per-class GAN's batch: the configured one, cut to the class size (a multiple of the device count)."""
  if class_size >= batch_size:
    return batch_size
  return max(num_devices, class_size - class_size % num_devices)


class PerClassGAN(ConditionalGAN):
  """One unconditional GAN (dcgan) per class that needs images, trained on that class only."""
  per_class = True

  def _class_section(self, section: ml_collections.ConfigDict, data: Data, c: int) -> ml_collections.ConfigDict:
    class_section = ml_collections.ConfigDict(section.to_dict())
    class_section.batch_size = class_batch_size(section.batch_size, int(np.sum(data.labels == c)), data.num_devices)
    return class_section

  def stages(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
             classes: Sequence[int]) -> list[stages.Stage]:
    runs = []
    for c in classes:
      folder = layout.generator(self.name, c)

      def fit(c=c, folder=folder):
        if data.stack_classes:
          return self._fit_stacked(section, layout, data, classes, c)
        rows = data.labels == c
        record = gan_loop.fit_gan(self._class_section(section, data, c), data.images[rows], data.labels[rows],
                                  folder, num_classes=data.num_classes, seed=data.seed, name=f"{self.name} class {c}")
        _stopped(record, folder)
        return record

      work = self.work(section)
      if data.stack_classes:  # the group's first class trains all of it; the others only read their records
        group = self._group(section, data, classes, c)
        work *= len(group) if c == group[0] else 0
      runs.append(stages.Stage(f"generator {self.name} class {c}", layout.generator_done(self.name, c), fit, work))
    return runs

  def _group(self, section: ml_collections.ConfigDict, data: Data, classes: Sequence[int], c: int) -> list[int]:
    """The classes that train with class c: those of its batch size."""
    size = self._class_section(section, data, c).batch_size
    return [j for j in classes if self._class_section(section, data, j).batch_size == size]

  def _fit_stacked(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
                   classes: Sequence[int], c: int) -> dict:
    """Class c's record; the first class of a batch size to run trains its whole group (one folder, so a
    stopped group resumes as the same group)."""
    class_section = self._class_section(section, data, c)
    record = stacked_gan_loop.finished_record(layout.generator(self.name, c), section.num_steps)
    if record is not None:
      return record
    group = self._group(section, data, classes, c)
    members = [stacked_gan_loop.Member(data.images[data.labels == j], data.labels[data.labels == j],
                                       layout.generator(self.name, j)) for j in group]
    records = stacked_gan_loop.fit_gans_stacked(
        class_section, members, layout.generator_group(self.name, group), num_classes=data.num_classes,
        seed=data.seed, name=f"{self.name} classes {','.join(map(str, group))}")
    _stopped(records[0], layout.generator_group(self.name, group))
    return records[group.index(c)]

  def load(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
           classes: Sequence[int]) -> ClassGenerator:
    generators = {c: gan_loop.load_generator(self._class_section(section, data, c), layout.generator(self.name, c),
                                           image_shape=data.image_shape, num_classes=data.num_classes)
                for c in classes}

    def generate(c: int, n: int, key: jax.Array) -> np.ndarray:
      if c not in generators:
        raise ValueError(f"{self.name} has no generator for class {c} (it needed no images)")
      return generators[c](key, np.zeros(n, np.int32))

    return ClassGenerator(generate, tuple(classes))


class ConditionalVAE:
  """One label-conditioned VAE (cvae) on the whole imbalanced set."""
  name = "cvae"
  model = "cvae"
  per_class = False

  def validate(self, section: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
               num_devices: int, prefix: str) -> None:
    vae_loop.validate_training(section, self.model, image_shape, num_classes, num_devices, prefix)

  def work(self, section: ml_collections.ConfigDict) -> float:
    return float(section.num_steps)

  def _programs(self, section, data: Data) -> vae_loop.Programs:
    return vae_loop.build_programs(section, parallel.make_mesh(), model=self.model, image_shape=data.image_shape,
                                   num_classes=data.num_classes)

  def stages(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
             classes: Sequence[int]) -> list[stages.Stage]:
    del classes
    folder = layout.generator(self.name)

    def fit():
      dataset = batch_order.InMemoryDataset(data.images.astype(np.float32) / 255.0, data.labels)
      result = vae_loop.fit(section, self._programs(section, data), dataset, folder, seed=data.seed, name=self.name)
      if result.stopped:
        raise stages.StageStopped(f"Stopped by {result.stopped_by} while training {folder}")
      return result.last_record

    return [stages.Stage(f"generator {self.name}", layout.generator_done(self.name), fit, self.work(section))]

  def load(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
           classes: Sequence[int]) -> ClassGenerator:
    del classes
    programs = self._programs(section, data)
    ckpt = checkpoint.Checkpointer(fs.join(layout.generator(self.name), "checkpoints"), async_save=False)
    try:
      params = ckpt.restore(programs.init(vae_step.make_key(data.seed))).params
    finally:
      ckpt.close()
    generate = jax.jit(programs.model.generate)

    def sample(c: int, n: int, key: jax.Array) -> np.ndarray:
      if n == 0:
        return np.zeros((0,) + data.image_shape, np.uint8)
      # One compiled shape for every chunk: the labels are all c, so the rows do not matter.
      fake = batching.map_chunks(lambda index, rows: generate(params, np.full(len(rows), c, np.int32),
                                                              jax.random.fold_in(key, index)), n, SAMPLE_CHUNK)
      return images_lib.to_uint8(fake, (0.0, 1.0))

    return ClassGenerator(sample, tuple(range(data.num_classes)))


class ConditionalDiffusion:
  """One class-conditioned diffusion model (ldm: latent diffusion; ddpm: on pixels) on the whole imbalanced set.

  Images are drawn with the section's sampler, steps and guidance scale.
  """
  per_class = False

  def __init__(self, name: str):
    self.name = name

  def validate(self, section: ml_collections.ConfigDict, image_shape: Sequence[int], num_classes: int,
               num_devices: int, prefix: str) -> None:
    if section.model != self.name:
      raise ValueError(f"config.{prefix}model must be '{self.name}' (the method decides it), got {section.model!r}")
    diffusion_train.validate_training(section, image_shape, num_classes, num_devices, prefix)

  def work(self, section: ml_collections.ConfigDict) -> float:
    return float(section.num_steps + (section.ae_steps if self.name == "ldm" else 0))

  def stages(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
             classes: Sequence[int]) -> list[stages.Stage]:
    del classes
    folder = layout.generator(self.name)

    def fit():
      record = diffusion_train.fit_diffusion(section, data.images, data.labels, folder, num_classes=data.num_classes,
                                             seed=data.seed, name=self.name)
      _stopped(record, folder)
      return record

    return [stages.Stage(f"generator {self.name}", layout.generator_done(self.name), fit, self.work(section))]

  def load(self, section: ml_collections.ConfigDict, layout: layout_lib.Layout, data: Data,
           classes: Sequence[int]) -> ClassGenerator:
    del classes
    sample = diffusion_train.load_sampler(section, layout.generator(self.name), image_shape=data.image_shape,
                                          num_classes=data.num_classes)
    return ClassGenerator(lambda c, n, key: sample(key, np.full(n, c, np.int32)), tuple(range(data.num_classes)))


GENERATORS = {g.name: g for g in (PerClassGAN("dcgan"), ConditionalGAN("cgan"), ConditionalGAN("acgan"),
                                  ConditionalGAN("stylegan2"), ConditionalGAN("progan"),
                                  ConditionalVAE(), ConditionalDiffusion("ldm"), ConditionalDiffusion("ddpm"))}


def get(name: str):
  if name not in GENERATORS:
    raise ValueError(f"Unknown generator '{name}'; choose one of: {', '.join(GENERATORS)}")
  return GENERATORS[name]
