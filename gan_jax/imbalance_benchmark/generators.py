"""Train the generative methods' models on the imbalanced set, and sample them by class.

`dcgan` cannot choose a class, so one unconditional DCGAN is trained per class
that needs images, on that class's images only. `cgan`, `acgan` and `cvae` are
one conditional model each, trained on the whole imbalanced set. GAN training is
`gan_loop.train_gan` itself (its checkpoints, resume and SIGTERM handling), with
the benchmark's data set, profile and seed filled into the method's GAN config.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from gan_jax import images as images_lib
from gan_jax import parallel
from gan_jax import workdir as workdir_lib
from gan_jax.data import sampler as sampler_lib
from gan_jax.imbalance_benchmark import methods as methods_lib
from gan_jax.train import gan_loop
from gan_jax.train import vae_loop

DONE_FILE = "done.json"
# A sampler: (class, n, key) -> uint8 images [n, H, W, C] of that class.
ClassSampler = Callable[[int, int, jax.Array], np.ndarray]


class GeneratorStopped(RuntimeError):
  """A SIGTERM/SIGINT stopped a generator's training after a checkpoint; rerun to resume."""


def gan_config(config: ml_collections.ConfigDict, method: str, train_class: int | None = None,
               class_size: int | None = None) -> ml_collections.ConfigDict:
  """The full GAN config of `method`: config.generators.<method> with the benchmark's data filled in.

  A per-class GAN's batch is cut to the class size (rounded down to a multiple
  of the device count) when the class has fewer images than one batch.
  """
  gan = ml_collections.ConfigDict(config.generators[method].to_dict())
  gan.dataset = config.dataset
  gan.seed = config.seed
  gan.imbalance = config.profile
  for field in ("imbalance_rho", "imbalance_n_max", "imbalance_minority_classes", "imbalance_fraction"):
    gan[field] = config[field]
  if train_class is not None:
    gan.train_classes = str(train_class)  # applied after the imbalanced subset is drawn
    if class_size is not None and class_size < gan.batch_size:
      devices = jax.device_count()
      gan.batch_size = max(devices, class_size - class_size % devices)
  return gan


def _finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, DONE_FILE))


def _mark_finished(workdir: str, record: dict) -> None:
  workdir_lib.write_json(os.path.join(workdir, DONE_FILE), record)


def _train_one_gan(gan: ml_collections.ConfigDict, workdir: str, idx_dir: str | None) -> None:
  if _finished(workdir):
    return
  record = gan_loop.train_gan(gan, workdir, idx_dir=idx_dir)
  if "stopped_by" in record:
    raise GeneratorStopped(f"stopped by {record['stopped_by']} while training {workdir}")
  _mark_finished(workdir, record)


def train_and_load(method: str, config: ml_collections.ConfigDict, workdir: str, idx_dir: str | None,
                   train_images: np.ndarray, train_labels: np.ndarray, add: Sequence[int]) -> ClassSampler:
  """Trains (or resumes, or reuses) the models of one generative method and returns its class sampler.

  Args:
    method: one of methods.GENERATIVE_METHODS.
    config: the benchmark config.
    workdir: the method's folder (generators/<method>).
    idx_dir: offline IDX folder (None: TFDS).
    train_images: uint8 imbalanced training images (for the cvae and class sizes).
    train_labels: their labels.
    add: images to add per class (dcgan trains a GAN only for classes with add > 0).

  Returns:
    `sample(c, n, key) -> uint8 [n, H, W, C]`.
  """
  if method == "dcgan":
    return _per_class_dcgan(config, workdir, idx_dir, train_labels, add)
  if method in methods_lib.GAN_METHODS:
    gan = gan_config(config, method)
    _train_one_gan(gan, workdir, idx_dir)
    generate = gan_loop.load_generator(gan, workdir)
    return lambda c, n, key: generate(key, np.full(n, c, np.int32))
  if method == "cvae":
    return _cvae(config, workdir, train_images, train_labels)
  raise ValueError(f"Unknown generative method '{method}'; choose from: {', '.join(methods_lib.GENERATIVE_METHODS)}")


def _per_class_dcgan(config, workdir, idx_dir, train_labels, add) -> ClassSampler:
  counts = np.bincount(train_labels, minlength=len(add))
  generators = {}
  for c in [c for c in range(len(add)) if add[c] > 0]:
    gan = gan_config(config, "dcgan", train_class=c, class_size=int(counts[c]))
    class_dir = os.path.join(workdir, f"class{c}")
    _train_one_gan(gan, class_dir, idx_dir)
    generators[c] = gan_loop.load_generator(gan, class_dir)

  def sample(c: int, n: int, key: jax.Array) -> np.ndarray:
    if c not in generators:
      raise ValueError(f"dcgan has no generator for class {c} (it needed no images)")
    return generators[c](key, np.zeros(n, np.int32))

  return sample


def _cvae(config, workdir, train_images, train_labels) -> ClassSampler:
  vae = ml_collections.ConfigDict(config.generators.cvae.to_dict())
  vae.dataset, vae.seed, vae.model = config.dataset, config.seed, "cvae"
  mesh = parallel.make_mesh()
  programs = vae_loop.build_programs(vae, mesh)
  workdir_lib.prepare(workdir, vae, outputs=("checkpoints", "metrics.jsonl", "tensorboard"))
  dataset = sampler_lib.InMemoryDataset(train_images.astype(np.float32) / 255.0, train_labels)
  result = vae_loop.fit(vae, programs, dataset, workdir, mesh, name="cvae")
  if result.stopped:
    raise GeneratorStopped(f"stopped while training {workdir}")
  params = result.state.params
  generate = jax.jit(programs.model.generate)

  def sample(c: int, n: int, key: jax.Array, chunk: int = 500) -> np.ndarray:
    out = [np.zeros((0,) + tuple(programs.model.image_shape), np.uint8)]
    for index, start in enumerate(range(0, n, chunk)):
      # One compiled shape for every chunk; the padding rows are dropped.
      fake = generate(params, np.full(chunk, c, np.int32), jax.random.fold_in(key, index))
      out.append(images_lib.to_uint8(np.asarray(jax.device_get(fake))[:min(chunk, n - start)], (0.0, 1.0)))
    return np.concatenate(out)

  return sample


def keyed(sample: ClassSampler, seed: int, stream: int) -> Callable[[int, int], np.ndarray]:
  """(class, n) -> images with a fresh key per call: fold_in(seed, stream, class, call number)."""
  calls: dict[int, int] = {}
  base = jax.random.fold_in(jax.random.PRNGKey(seed), stream)

  def draw(c: int, n: int) -> np.ndarray:
    calls[c] = calls.get(c, 0) + 1
    return sample(c, n, jax.random.fold_in(jax.random.fold_in(base, c), calls[c]))

  return draw

