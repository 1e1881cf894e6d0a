"""Figures of a trained autoencoder: reconstructions, samples, latent traversals, 2-D latent plots.

Every function takes host parameters and test arrays and writes one PNG; none
of them changes the model. Autoencoders without a prior (ae, aae) are sampled
and traversed in the units of a Gaussian fitted to the test-set codes ("ex-post
density estimation", Ghosh et al., ICLR 2020), VAEs in the units of their
N(0, I) prior.
"""
from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax.models.autoencoders import ReconstructionModel

NUM_RECONSTRUCTIONS = 10
TRAVERSAL_STEPS = 9
MAX_TRAVERSAL_DIMS = 32
MANIFOLD_SIDE = 15
SCATTER_POINTS = 5000
FIGURE_CHUNK = 256


class Codec:
  """Jitted encoder / decoder of one trained model, applied in fixed-size padded chunks.

  Every figure reuses the same two compiled programs whatever its batch size
  (compilation, not compute, dominates these small figures on a CPU).
  """

  def __init__(self, model: ReconstructionModel, params):
    self.model, self.params = model, params

    def encode(p, x, y):
      code = model.encode(p, x, y)
      return code[0] if model.variational else code

    self._encode = jax.jit(encode)
    self._decode = jax.jit(lambda p, z, y: jax.nn.sigmoid(model.decode(p, z, y)))

  def _map(self, fn, first: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n, outputs = len(first), []
    for start in range(0, n, FIGURE_CHUNK):
      rows = np.arange(start, start + FIGURE_CHUNK) % n  # wrap-around padding, sliced off below
      out = fn(self.params, jnp.asarray(first[rows], jnp.float32), jnp.asarray(labels[rows], jnp.int32))
      outputs.append(np.asarray(out)[:min(FIGURE_CHUNK, n - start)])
    return np.concatenate(outputs)

  def encode(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Codes (ae) or posterior means (vae) of every image, [N, latent_dim]."""
    return self._map(self._encode, images, labels)

  def decode(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean images in [0, 1] of codes z."""
    return self._map(self._decode, np.asarray(z, np.float32), labels)


def code_statistics(model: ReconstructionModel, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(centre, per-dimension scale) of the latent units: the prior for VAEs, the codes' moments otherwise."""
  if model.variational:
    return np.zeros(model.latent_dim), np.ones(model.latent_dim)
  return codes.mean(axis=0), codes.std(axis=0) + 1e-6


def first_of_each_class(labels: np.ndarray, count: int) -> np.ndarray:
  """Indices of up to `count` examples taken round-robin over the classes present (varied figures)."""
  classes = np.unique(labels)
  members = [np.flatnonzero(labels == c) for c in classes]
  picks = []
  for i in range(len(labels)):
    rank, which = divmod(i, len(classes))
    if rank < len(members[which]):
      picks.append(members[which][rank])
    if len(picks) == count:
      break
  return np.asarray(picks)


def reconstructions(path, codec: Codec, images, labels) -> None:
  """Inputs in the top row, their reconstructions (through the posterior mean) below."""
  idx = first_of_each_class(labels, NUM_RECONSTRUCTIONS)
  outputs = codec.decode(codec.encode(images[idx], labels[idx]), labels[idx])
  images_lib.save_grid(path, np.concatenate([images[idx], outputs]), 2, len(idx))


def samples(path, codec: Codec, codes, seed: int) -> None:
  """Random samples: N(0, I) for vae, one row per class for cvae, a fitted Gaussian for ae/aae."""
  model, rng = codec.model, np.random.default_rng([seed, 0x5A])
  rows, cols, labels = images_lib.sample_grid(model.conditional, model.num_classes)
  if model.variational:
    z = rng.standard_normal((rows * cols, model.latent_dim))
  else:
    mean, cov = codes.mean(axis=0), np.atleast_2d(np.cov(codes, rowvar=False))
    z = rng.multivariate_normal(mean, cov, size=rows * cols, method="eigh")
  images_lib.save_grid(path, codec.decode(z, labels), rows, cols)


def latent_traversal(path, codec: Codec, base_code, label, codes) -> None:
  """Row d sweeps latent unit d from -3 to 3 (prior / code-scale units), the others fixed at `base_code`."""
  centre, scale = code_statistics(codec.model, codes)
  dims = min(codec.model.latent_dim, MAX_TRAVERSAL_DIMS)
  values = np.linspace(-3.0, 3.0, TRAVERSAL_STEPS)
  z = np.repeat(base_code[None], dims * TRAVERSAL_STEPS, axis=0)
  for d in range(dims):
    z[d * TRAVERSAL_STEPS:(d + 1) * TRAVERSAL_STEPS, d] = centre[d] + values * scale[d]
  grid = codec.decode(z, np.full((len(z),), label, np.int32))
  images_lib.save_grid(path, grid, dims, TRAVERSAL_STEPS)


def latent_scatter(path, codes, labels, title: str) -> None:
  """Scatter of 2-D test codes coloured by class."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 5))
  points = ax.scatter(codes[:SCATTER_POINTS, 0], codes[:SCATTER_POINTS, 1], c=labels[:SCATTER_POINTS],
                      cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
  fig.colorbar(points, ax=ax, ticks=range(10), label="class")
  ax.set_xlabel("z[0]")
  ax.set_ylabel("z[1]")
  ax.set_title(title)
  fs.save_figure(fig, path)


def manifold(path, codec: Codec, codes, label: int) -> None:
  """Decoded MANIFOLD_SIDE^2 grid over a 2-D latent space.

  VAEs: evenly spaced quantiles (5%..95%) of the N(0, 1) prior mapped through its
  inverse CDF (Kingma & Welling, 2014, Fig. 4); ae/aae: the 1st..99th percentile
  range of the test codes.
  """
  if codec.model.variational:
    quantiles = np.linspace(0.05, 0.95, MANIFOLD_SIDE)
    axis = [np.array([statistics.NormalDist().inv_cdf(q) for q in quantiles])] * 2
  else:
    lo, hi = np.percentile(codes, 1, axis=0), np.percentile(codes, 99, axis=0)
    axis = [np.linspace(lo[d], hi[d], MANIFOLD_SIDE) for d in range(2)]
  # Rows go down in z[1] (top = high), columns right in z[0], like a plot.
  grid_y, grid_x = np.meshgrid(axis[1][::-1], axis[0], indexing="ij")
  z = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
  grid = codec.decode(z, np.full((len(z),), label, np.int32))
  images_lib.save_grid(path, grid, MANIFOLD_SIDE, MANIFOLD_SIDE)


def write_all(workdir: str, model: ReconstructionModel, params, images: np.ndarray, labels: np.ndarray,
              seed: int) -> list[str]:
  """Writes every figure of a run into `workdir`; returns the file names written."""
  codec = Codec(model, params)
  codes = codec.encode(images, labels)
  reconstructions(fs.join(workdir, "reconstructions.png"), codec, images, labels)
  samples(fs.join(workdir, "samples.png"), codec, codes, seed)
  latent_traversal(fs.join(workdir, "latent_traversal.png"), codec, codes[0], int(labels[0]), codes)
  written = ["reconstructions.png", "samples.png", "latent_traversal.png"]
  if model.latent_dim == 2:
    title = f"{model.name}: test-set {'posterior means' if model.variational else 'codes'}"
    latent_scatter(fs.join(workdir, "latent_scatter.png"), codes, labels, title)
    # The cvae's latent space is per class; its manifold shows class 0.
    manifold(fs.join(workdir, "manifold.png"), codec, codes, 0)
    written += ["latent_scatter.png", "manifold.png"]
  return written
