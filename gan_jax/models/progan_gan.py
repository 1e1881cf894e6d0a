"""ProGAN as a GAN of the shared train step: phase networks at the data's resolution, and the phase schedule.

The networks of `progan` grow 4x4 -> 8x8 -> ... -> the network size (32 for 28x28 and 32x32
images). A phase's generator draws at its own resolution and is up-sampled (nearest) to the
network size and cropped to the data's; its discriminator pads the data's images to the
network size (with -1, the background of [-1, 1] images) and average-pools them down to
the phase's resolution. So every phase reads and writes images of the data's shape and the
step, loop, sampler and benchmark need no resolution logic; what changes between phases is
`stage` (static: one jitted step per phase) and `alpha` (a traced module attribute, set per
step from the step counter: no retrace during a fade).

Schedule (Karras et al., 2018, sec. 3 and appendix A): the 4x4 phase trains `stable_steps`;
each later one fades its new block in over `fade_steps` (alpha 0 -> 1) and then trains
`stable_steps` at alpha 1; the last phase runs until the end of training. During a fade the
reals are blended between the two resolutions exactly as the generator's output is
(`fade_reals`), so the discriminator never sees a resolution gap between reals and fakes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models import progan
from gan_jax.models import stylegan2_gan


@dataclasses.dataclass(frozen=True)
class PhaseSchedule:
  """Which growth phase a step belongs to.

  Attributes:
    num_stages: resolutions 4, 8, ..., network size.
    stable_steps: steps of each phase at alpha = 1 (the last phase runs on to the end).
    fade_steps: steps of each fade-in after the first phase.
  """
  num_stages: int
  stable_steps: int
  fade_steps: int

  def start(self, stage: int) -> int:
    """The first step of phase `stage` (its fade-in starts there)."""
    return 0 if stage == 0 else self.stable_steps + (stage - 1) * (self.fade_steps + self.stable_steps)

  def stage_at(self, step: int) -> int:
    """The phase that step `step` (0-based) trains."""
    stage = 0
    while stage + 1 < self.num_stages and step >= self.start(stage + 1):
      stage += 1
    return stage

  def fade(self, stage: int) -> tuple[int, int]:
    """(first step, steps) of the phase's fade-in; (0, 0) for the first phase, which has none."""
    return (self.start(stage), self.fade_steps) if stage > 0 else (0, 0)


def num_stages(image_size: int) -> int:
  """Phases from 4x4 up to the network size that holds `image_size`."""
  return stylegan2_gan.network_size(image_size).bit_length() - 2  # 4 -> 1, 8 -> 2, 32 -> 4


def _resize(images: jax.Array, side: int) -> jax.Array:
  """Square images to `side`: nearest up-sampling or average pooling by a power of two."""
  current = images.shape[1]
  if side > current:
    factor = side // current
    return jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)
  factor = current // side
  b, _, _, c = images.shape
  return images.reshape(b, side, factor, side, factor, c).mean(axis=(2, 4))


class PhaseGenerator(nn.Module):
  """z, labels -> images [B, image_size, image_size, channels] drawn by the phase `stage` at fade `alpha`."""
  image_size: int
  channels: int
  widths: Sequence[int]
  num_classes: int
  stage: int
  alpha: Any = 1.0

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    del train  # ProGAN's generator has no batch statistics or random layers
    net = progan.Generator(tuple(self.widths), self.channels, self.num_classes, name="net")
    images = _resize(net(z, self.stage, self.alpha, labels), stylegan2_gan.network_size(self.image_size))
    return stylegan2_gan.center_crop(images, self.image_size)


class PhaseDiscriminator(nn.Module):
  """images [B, image_size, image_size, C], labels -> (logits [B], None) of the phase `stage` at fade `alpha`."""
  image_size: int
  widths: Sequence[int]
  num_classes: int
  stage: int
  alpha: Any = 1.0
  pad_value: float = -1.0

  @nn.compact
  def __call__(self, images, labels=None, train: bool = False):
    del train
    padded = stylegan2_gan.center_pad(images, stylegan2_gan.network_size(self.image_size), self.pad_value)
    net = progan.Discriminator(tuple(self.widths), self.num_classes, name="net")
    return net(_resize(padded, 4 << self.stage), self.stage, self.alpha, labels), None


def fade_reals(images: jax.Array, alpha: jax.Array, *, stage: int, pad_value: float = -1.0) -> jax.Array:
  """Real images as the phase's discriminator should see them during a fade-in.

  At the phase's resolution r, the reals become lerp(up2(down2(x_r)), x_r, alpha): the previous
  resolution's image at alpha = 0, the phase's own at 1, as the generator's output fades. The
  result is returned at the data's shape (nearest up-sampled from r, cropped), which the
  discriminator pools back to exactly the blend; on 28x28 data the pooled pixels that straddle
  the 2-pixel padding see the padding value instead of the blend (at 4 to 16 px only).
  """
  if stage == 0:
    return images
  side = images.shape[1]
  size = stylegan2_gan.network_size(side)
  x = _resize(stylegan2_gan.center_pad(images, size, pad_value), 4 << stage)
  coarse = progan.upsample2(progan.downsample2(x))
  blended = coarse + alpha * (x - coarse)
  return stylegan2_gan.center_crop(_resize(blended, size), side)
