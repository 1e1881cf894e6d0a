"""PyTorch mirror of gan_jax's ProGAN phase networks (gan_jax.models.progan_gan), for the step benchmark.

Built from the layer plans of `PhaseGenerator` and `PhaseDiscriminator` with the same layers
and parameter count (a test checks it): equalised-learning-rate layers, pixelwise feature
normalisation in the generator, nearest up-sampling and average pooling between resolutions,
the fade of the newest block with `alpha`, the minibatch-stddev layer and projection in the
discriminator, and the phase wrappers that crop the network's output to the data's side and
pad the data back (with -1). As under XLA, which drops them as dead code, the toRGB/fromRGB
layers of phases older than the previous one hold parameters but are not run. The step is
torch_reference's GAN step (WGAN-GP with ProGAN's drift term, the reals faded as the phase's
are, the generator's moving average). Initialisation differs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import torch_stylegan2
from benchmarks.torch_stylegan2 import EqualizedConv, EqualizedLinear

LEAKY = 0.2


def pixel_norm(x, eps: float = 1e-8):
  return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def _act(x):
  return F.leaky_relu(x, LEAKY)


def _up(x):
  return F.interpolate(x, scale_factor=2, mode="nearest")


def _network_size(widths) -> int:
  return 4 << (len(widths) - 1)


class PhaseGenerator(nn.Module):
  """gan_jax's PhaseGenerator: z, labels -> [B, C, image_size, image_size] of the phase `stage` at `alpha`."""

  def __init__(self, z_dim: int, plan: dict):
    super().__init__()
    widths, self.channels, self.num_classes = plan["widths"], plan["channels"], plan["num_classes"]
    self.stage, self.alpha, self.image_size = plan["stage"], float(plan["alpha"]), plan["image_size"]
    self.network_size, self.w0 = _network_size(widths), widths[0]
    self.embed = EqualizedLinear(self.num_classes, z_dim) if self.num_classes else None
    self.dense = EqualizedLinear(2 * z_dim if self.num_classes else z_dim, 16 * widths[0])
    self.conv4 = EqualizedConv(widths[0], widths[0], 3)
    self.to_rgb = nn.ModuleList(EqualizedConv(w, self.channels, 1) for w in widths[:self.stage + 1])
    self.convs = nn.ModuleList(nn.ModuleList([EqualizedConv(widths[s - 1], widths[s], 3),
                                              EqualizedConv(widths[s], widths[s], 3)])
                               for s in range(1, self.stage + 1))

  def forward(self, z, labels=None):
    x = z
    if self.embed is not None:
      x = torch.cat([x, self.embed(F.one_hot(labels, self.num_classes).to(z.dtype))], dim=-1)
    x = x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + 1e-8)
    x = _act(self.dense(x)).view(-1, 4, 4, self.w0).permute(0, 3, 1, 2)  # NHWC order, as gan_jax reshapes
    x = pixel_norm(_act(self.conv4(pixel_norm(x))))
    previous = None
    for s, (conv0, conv1) in enumerate(self.convs, start=1):
      if s == self.stage:
        previous = self.to_rgb[s - 1](x)
      x = _up(x)
      x = pixel_norm(_act(conv1(pixel_norm(_act(conv0(x))))))
    image = self.to_rgb[self.stage](x)
    if previous is not None:
      faded = _up(previous)
      image = faded + self.alpha * (image - faded)
    factor = self.network_size // image.shape[-1]
    if factor > 1:
      image = F.interpolate(image, scale_factor=factor, mode="nearest")
    offset = (self.network_size - self.image_size) // 2
    return image[:, :, offset:offset + self.image_size, offset:offset + self.image_size]


class PhaseDiscriminator(nn.Module):
  """gan_jax's PhaseDiscriminator: images [B, C, S, S], labels -> (logits [B], None)."""

  def __init__(self, image_shape, plan: dict):
    super().__init__()
    widths, self.num_classes = plan["widths"], plan["num_classes"]
    self.stage, self.alpha, self.pad_value = plan["stage"], float(plan["alpha"]), plan["pad_value"]
    self.network_size, self.w0 = _network_size(widths), widths[0]
    channels = image_shape[2]
    self.from_rgb = nn.ModuleList(EqualizedConv(channels, w, 1) for w in widths[:self.stage + 1])
    self.convs = nn.ModuleList(nn.ModuleList([EqualizedConv(widths[s], widths[s], 3),
                                              EqualizedConv(widths[s], widths[s - 1], 3)])
                               for s in range(1, self.stage + 1))
    self.conv4 = EqualizedConv(widths[0] + 1, widths[0], 3)
    self.dense = EqualizedLinear(16 * widths[0], widths[0])
    self.out = EqualizedLinear(widths[0], 1)
    self.class_embed = EqualizedLinear(self.num_classes, widths[0]) if self.num_classes else None

  def forward(self, images, labels=None):
    pad = self.network_size - images.shape[-1]
    if pad:
      images = F.pad(images, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=self.pad_value)
    side = 4 << self.stage
    if images.shape[-1] > side:
      images = F.avg_pool2d(images, images.shape[-1] // side)
    x = _act(self.from_rgb[self.stage](images))
    for s in range(self.stage, 0, -1):
      conv0, conv1 = self.convs[s - 1]
      x = F.avg_pool2d(_act(conv1(_act(conv0(x)))), 2)
      if s == self.stage:
        coarse = _act(self.from_rgb[s - 1](F.avg_pool2d(images, 2)))
        x = coarse + self.alpha * (x - coarse)
    x = _act(self.conv4(torch_stylegan2.minibatch_stddev(x)))
    features = _act(self.dense(x.permute(0, 2, 3, 1).flatten(1)))
    logits = self.out(features)[:, 0]
    if self.class_embed is not None:
      embedding = self.class_embed(F.one_hot(labels, self.num_classes).to(features.dtype))
      logits = logits + (embedding * features).sum(-1) / self.w0 ** 0.5
    return logits, None


def fade_reals(images, alpha: float, plan: dict):
  """gan_jax.models.progan_gan.fade_reals for the discriminator plan's phase: lerp(up2(down2(x_r)), x_r, alpha)."""
  stage = plan["stage"]
  if stage == 0:
    return images
  side, size = images.shape[-1], _network_size(plan["widths"])
  pad = size - side
  x = F.pad(images, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=plan["pad_value"]) if pad else images
  if size > 4 << stage:
    x = F.avg_pool2d(x, size // (4 << stage))
  coarse = _up(F.avg_pool2d(x, 2))
  blended = coarse + alpha * (x - coarse)
  if blended.shape[-1] < size:
    blended = F.interpolate(blended, scale_factor=size // blended.shape[-1], mode="nearest")
  offset = (size - side) // 2
  return blended[:, :, offset:offset + side, offset:offset + side]
