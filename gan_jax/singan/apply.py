"""Using a trained SinGAN pyramid: random samples (any size), samples from a scale,
reconstruction and super-resolution, and the PNGs a run writes.

Every function runs the generators coarse to fine,

  x_n = G_n(amp_n * z_n + up(x_{n-1}), up(x_{n-1})),   x_{-1} = 0, amp_0 = 1,

with BatchNorm in inference mode, so any batch size and image size work.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import fs
from gan_jax import images as images_lib
from gan_jax.models import singan as models
from gan_jax.singan import pyramid as pyramid_lib

Size = tuple[int, int]
VALUE_RANGE = (-1.0, 1.0)


@flax.struct.dataclass
class Pyramid:
  """The frozen generators of one image, coarse to fine (a pytree: jitted functions take it whole).

  Attributes:
    modules: the generator of each scale (static).
    sizes: (h, w) of each scale (static).
    variables: {'params', 'batch_stats'} of each scale.
    noise_amps: noise amplitude of each scale (1 at the coarsest).
    rec_noise: the fixed noise map [1, h_0, w_0, C] that reconstructs the image.
  """
  modules: tuple[models.SinGenerator, ...] = flax.struct.field(pytree_node=False)
  sizes: tuple[Size, ...] = flax.struct.field(pytree_node=False)
  variables: tuple[Any, ...]
  noise_amps: tuple[Any, ...]
  rec_noise: jax.Array

  @property
  def num_scales(self) -> int:
    return len(self.modules)

  def append(self, module: models.SinGenerator, size: Size, variables: Any, noise_amp: Any) -> "Pyramid":
    """This pyramid with one finer scale on top."""
    return self.replace(modules=self.modules + (module,), sizes=self.sizes + (size,),
                        variables=self.variables + (variables,), noise_amps=self.noise_amps + (noise_amp,))

  def truncated(self, last: int) -> "Pyramid":
    """The pyramid of scales 0..last (jitted functions compile once per structure, so this reuses them)."""
    return self.replace(modules=self.modules[:last + 1], sizes=self.sizes[:last + 1],
                        variables=self.variables[:last + 1], noise_amps=self.noise_amps[:last + 1])


def upsample(x: jax.Array, size: Size) -> jax.Array:
  """Bicubic resize to the next scale's size, clipped to the image range."""
  return jnp.clip(pyramid_lib.resize(x, size), -1.0, 1.0)


def run_scales(modules: Sequence[Any], variables: Sequence[Any], amps: Sequence[Any],
               noises: Sequence[jax.Array], prev: jax.Array, sizes: Sequence[Size]) -> jax.Array:
  """Runs generators `modules` in order, each on its noise plus the upsampled output of the previous one.

  Args:
    modules: generators of consecutive scales.
    variables: their variables.
    amps: their noise amplitudes.
    noises: one [N, h, w, C] noise map per generator, at that generator's size.
    prev: the image entering the first generator, already at its size (zeros at scale 0).
    sizes: (h, w) of each generator's scale.

  Returns:
    The last generator's output [N, h, w, C].
  """
  x = prev
  for n, (module, variables_n, amp, z) in enumerate(zip(modules, variables, amps, noises)):
    if n > 0:
      x = upsample(x, sizes[n])
    x = module.apply(variables_n, amp * z + x, x, train=False)
  return x


def random_noises(key: jax.Array, sizes: Sequence[Size], num: int, channels: int = 3,
                  first: int = 0) -> list[jax.Array]:
  """Fresh noise maps for scales first.. of `sizes`; the coarsest scale's noise is single-channel as in SinGAN."""
  return [pyramid_lib.noise(jax.random.fold_in(key, n), (num, h, w, channels), single_channel=n == 0)
          for n, (h, w) in enumerate(sizes) if n >= first]


def scaled_sizes(sizes: Sequence[Size], scale_h: float, scale_w: float) -> list[Size]:
  """Every scale's size stretched by (scale_h, scale_w): sampling the coarsest noise at a new size."""
  return [(max(1, math.ceil(h * scale_h - 1e-6)), max(1, math.ceil(w * scale_w - 1e-6))) for h, w in sizes]


@functools.partial(jax.jit, static_argnames=("num", "scale_h", "scale_w"))
def random_samples(pyr: Pyramid, key: jax.Array, num: int, scale_h: float = 1.0, scale_w: float = 1.0) -> jax.Array:
  """Random images [num, h, w, C] from noise; other sizes and aspect ratios via scale_h / scale_w."""
  sizes = scaled_sizes(pyr.sizes, scale_h, scale_w)
  channels = pyr.rec_noise.shape[-1]
  prev = jnp.zeros((num,) + sizes[0] + (channels,))
  return run_scales(pyr.modules, pyr.variables, pyr.noise_amps, random_noises(key, sizes, num, channels), prev, sizes)


@functools.partial(jax.jit, static_argnames=("start", "num"))
def samples_from_scale(pyr: Pyramid, reals: Sequence[jax.Array], start: int, key: jax.Array,
                       num: int) -> jax.Array:
  """Random images that keep the real image's structure coarser than scale `start`.

  The real image at scale start - 1, upsampled, enters generator `start` in place
  of a generated image; scales start.. add fresh noise. start = 0 is `random_samples`.
  """
  if start == 0:
    return random_samples(pyr, key, num)
  if not 0 < start < pyr.num_scales:
    raise ValueError(f"start scale {start} is outside 0..{pyr.num_scales - 1}")
  sizes = list(pyr.sizes)
  prev = jnp.repeat(upsample(reals[start - 1], sizes[start]), num, axis=0)
  channels = prev.shape[-1]
  noises = random_noises(key, sizes, num, channels, first=start)
  return run_scales(pyr.modules[start:], pyr.variables[start:], pyr.noise_amps[start:], noises, prev,
                    sizes[start:])


@jax.jit
def reconstruct(pyr: Pyramid) -> jax.Array:
  """The reconstruction [1, h, w, C]: the fixed noise at the coarsest scale, zero noise above."""
  noises = [pyr.rec_noise] + [jnp.zeros((1,) + size + pyr.rec_noise.shape[-1:]) for size in pyr.sizes[1:]]
  return run_scales(pyr.modules, pyr.variables, pyr.noise_amps, noises, jnp.zeros_like(pyr.rec_noise), pyr.sizes)


@functools.partial(jax.jit, static_argnames=("factor", "scale_factor"))
def super_resolve(pyr: Pyramid, image: jax.Array, factor: float, scale_factor: float,
                  key: jax.Array) -> jax.Array:
  """SinGAN super-resolution: continue the pyramid above the finest scale.

  The image is upsampled in k steps of about 1 / scale_factor each (k = round(log
  factor / log(1 / scale_factor)), the step adjusted so k steps give exactly
  `factor`), and after every step the finest generator adds detail, with noise at
  the finest scale's amplitude (SinGAN's SR application, Sec. 4 of the paper).

  Args:
    pyr: a trained pyramid.
    image: [N, h, w, C] in [-1, 1], usually the finest real image.
    factor: total upscaling factor (> 1).
    scale_factor: the pyramid's factor r between scales.
    key: PRNG key of the noise.

  Returns:
    [N, round(h * factor), round(w * factor), C].
  """
  steps = max(1, round(math.log(factor) / math.log(1.0 / scale_factor)))
  n, h, w, c = image.shape
  x = image
  for k in range(1, steps + 1):
    size = (round(h * factor ** (k / steps)), round(w * factor ** (k / steps)))
    x = upsample(x, size)
    z = pyramid_lib.noise(jax.random.fold_in(key, k), (n,) + size + (c,))
    x = pyr.modules[-1].apply(pyr.variables[-1], pyr.noise_amps[-1] * z + x, x, train=False)
  return x


def _np(x: jax.Array) -> np.ndarray:
  return np.asarray(jax.device_get(x))


def _stack_resized(images: Sequence[jax.Array], size: Size) -> np.ndarray:
  return np.concatenate([_np(upsample(x, size)) for x in images])


def save_scale_samples(path: str, pyr: Pyramid, reals: Sequence[jax.Array], scale: int, key: jax.Array,
                       num: int = 4) -> None:
  """One row: the real image at `scale`, its reconstruction, `num` random samples (through scale `scale`)."""
  pyr = pyr.truncated(scale)
  row = np.concatenate([_np(reals[scale]), _np(reconstruct(pyr)), _np(random_samples(pyr, key, num))])
  images_lib.save_grid(path, row, 1, num + 2, VALUE_RANGE)


def write_outputs(workdir: str, pyr: Pyramid, reals: Sequence[jax.Array], key: jax.Array, num_samples: int = 8,
                  start_scale: int = 1, wide_factor: float = 2.0, sr_factor: float = 4.0,
                  scale_factor: float = 0.75, prefix: str = "") -> list[str]:
  """Writes the PNGs of a trained pyramid into `workdir`; returns their file names.

  real_pyramid.png (every scale, resized to the finest size), samples_random.png,
  samples_wide.png (coarsest noise `wide_factor` times wider), samples_from_scale_XX.png,
  reconstruction.png (real | reconstruction) and super_resolution.png (bicubic | SinGAN SR).
  """
  keys = jax.random.split(key, 4)
  finest = pyr.sizes[-1]
  cols = max(1, min(4, num_samples))
  rows = max(1, num_samples // cols)
  outputs = {
      "real_pyramid.png": (_stack_resized(reals, finest), 1, len(reals)),
      "samples_random.png": (_np(random_samples(pyr, keys[0], rows * cols)), rows, cols),
      "samples_wide.png": (_np(random_samples(pyr, keys[1], rows, scale_w=wide_factor)), rows, 1),
      "reconstruction.png": (np.concatenate([_np(reals[-1]), _np(reconstruct(pyr))]), 1, 2),
  }
  start = min(max(start_scale, 0), pyr.num_scales - 1)
  outputs[f"samples_from_scale_{start:02d}.png"] = (
      np.concatenate([_np(reals[-1]), _np(samples_from_scale(pyr, reals, start, keys[2], cols))]), 1, cols + 1)
  sr = super_resolve(pyr, reals[-1], sr_factor, scale_factor, keys[3])
  bicubic = upsample(reals[-1], sr.shape[1:3])
  outputs["super_resolution.png"] = (np.concatenate([_np(bicubic), _np(sr)]), 1, 2)
  names = []
  for name, (grid, rows_n, cols_n) in outputs.items():
    images_lib.save_grid(fs.join(workdir, prefix + name), grid, rows_n, cols_n, VALUE_RANGE)
    names.append(prefix + name)
  return names
