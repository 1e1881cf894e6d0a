"""PyTorch mirror of gan_jax's StyleGAN2 (gan_jax.models.stylegan2_gan) and its train step, for the step benchmark.

Built from the layer plans the benchmark reads off the Flax modules, with the same layers
and parameter count (a test checks it): equalised-learning-rate layers scaled at run time,
the mapping network with the label embedding joined to z, modulated/demodulated 3x3
convolutions in the non-fused form gan_jax uses, per-pixel noise with learned strengths,
toRGB skips summed over bilinearly up-sampled resolutions, and the residual discriminator
with a minibatch-stddev layer and projection. The step is gan_jax's with StyleGAN2's
switches: style mixing in G's training passes, the non-saturating loss, lazy R1 on every
`r1_interval`-th discriminator update. Initialisation differs (it does not affect speed).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LEAKY = 0.2


class EqualizedLinear(nn.Module):
  def __init__(self, fan_in: int, features: int, lr_multiplier: float = 1.0, bias_init: float = 0.0):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(features, fan_in) / lr_multiplier)
    self.bias = nn.Parameter(torch.full((features,), bias_init / lr_multiplier))
    self.scale, self.lr_multiplier = lr_multiplier / math.sqrt(fan_in), lr_multiplier

  def forward(self, x):
    return F.linear(x, self.weight * self.scale, self.bias * self.lr_multiplier)


class EqualizedConv(nn.Module):
  def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
    self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
    self.scale, self.padding = 1.0 / math.sqrt(c_in * kernel * kernel), kernel // 2

  def forward(self, x):
    return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def normalize_2nd_moment(x, eps: float = 1e-8):
  return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


class Mapping(nn.Module):
  def __init__(self, z_dim: int, w_dim: int, num_layers: int, num_classes: int):
    super().__init__()
    self.num_classes = num_classes
    self.embed = EqualizedLinear(num_classes, w_dim) if num_classes else None
    dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * num_layers
    self.layers = nn.ModuleList(EqualizedLinear(a, b, lr_multiplier=0.01) for a, b in zip(dims[:-1], dims[1:]))

  def forward(self, z, labels):
    x = normalize_2nd_moment(z)
    if self.embed is not None:
      x = torch.cat([x, normalize_2nd_moment(self.embed(F.one_hot(labels, self.num_classes).to(z.dtype)))], dim=1)
    for layer in self.layers:
      x = F.leaky_relu(layer(x), LEAKY)
    return x


class ModulatedConv(nn.Module):
  def __init__(self, w_dim: int, c_in: int, c_out: int, kernel: int = 3, demodulate: bool = True):
    super().__init__()
    self.affine = EqualizedLinear(w_dim, c_in, bias_init=1.0)
    self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
    self.bias = nn.Parameter(torch.zeros(c_out))
    self.scale, self.padding, self.demodulate = 1.0 / math.sqrt(c_in * kernel * kernel), kernel // 2, demodulate

  def forward(self, x, w):
    styles = self.affine(w)
    weight = self.weight * self.scale
    y = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
    if self.demodulate:
      norms = styles.square() @ weight.square().sum(dim=(2, 3)).t()
      y = y * torch.rsqrt(norms + 1e-8)[:, :, None, None]
    return y + self.bias[None, :, None, None]


class StyleLayer(nn.Module):
  def __init__(self, w_dim: int, c_in: int, c_out: int):
    super().__init__()
    self.conv = ModulatedConv(w_dim, c_in, c_out)
    self.noise_strength = nn.Parameter(torch.zeros(()))

  def forward(self, x, w):
    y = self.conv(x, w)
    y = y + self.noise_strength * torch.randn((y.shape[0], 1, y.shape[2], y.shape[3]), device=y.device, dtype=y.dtype)
    return F.leaky_relu(y, LEAKY) * math.sqrt(2.0)


class StyleGenerator(nn.Module):
  """gan_jax's StyleGenerator in training mode: mixing with probability `style_mixing_prob`, fresh noise."""

  def __init__(self, z_dim: int, plan: dict):
    super().__init__()
    widths, w_dim, channels = plan["widths"], plan["w_dim"], plan["channels"]
    self.network_size = 4 * 2 ** (len(widths) - 1)
    self.image_size, self.mixing = plan["image_size"], plan["style_mixing_prob"]
    self.mapping = Mapping(z_dim, w_dim, plan["mapping_layers"], plan["num_classes"])
    self.const = nn.Parameter(torch.randn(widths[0], 4, 4))
    self.layers, self.torgb = nn.ModuleList(), nn.ModuleList()
    c_in = widths[0]
    for width in widths:
      self.layers.extend([StyleLayer(w_dim, c_in, width), StyleLayer(w_dim, width, width)])
      self.torgb.append(ModulatedConv(w_dim, width, channels, kernel=1, demodulate=False))
      c_in = width
    self.num_ws = len(self.layers)

  def forward(self, z, labels):
    w = self.mapping(z, labels)
    ws = w[:, None].expand(-1, self.num_ws, -1)
    if self.mixing > 0:
      w2 = self.mapping(torch.randn_like(z), labels)
      crossover = torch.randint(1, self.num_ws, (z.shape[0],), device=z.device)
      crossover = torch.where(torch.rand(z.shape[0], device=z.device) < self.mixing, crossover, self.num_ws)
      later = torch.arange(self.num_ws, device=z.device)[None, :] >= crossover[:, None]
      ws = torch.where(later[..., None], w2[:, None], ws)
    x = self.const[None].expand(z.shape[0], -1, -1, -1)
    image = None
    for i, torgb in enumerate(self.torgb):
      if i:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
      x = self.layers[2 * i](x, ws[:, 2 * i])
      x = self.layers[2 * i + 1](x, ws[:, 2 * i + 1])
      rgb = torgb(x, ws[:, 2 * i + 1])
      image = rgb if image is None else F.interpolate(image, scale_factor=2, mode="bilinear",
                                                      align_corners=False) + rgb
    offset = (self.network_size - self.image_size) // 2
    return image[:, :, offset:offset + self.image_size, offset:offset + self.image_size]


def minibatch_stddev(x, group_size: int = 4):
  b, c, h, w = x.shape
  g = min(group_size, b)
  y = x.reshape(b // g, g, c, h, w)  # groups of consecutive samples, as in gan_jax
  std = torch.sqrt(y.var(dim=1, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))
  return torch.cat([x, std[:, None, None, None, None].expand(-1, g, 1, h, w).reshape(b, 1, h, w)], dim=1)


class StyleDiscriminator(nn.Module):
  """gan_jax's StyleDiscriminator: pad to the network size, residual blocks, stddev, projection. -> (logits, None)."""

  def __init__(self, image_shape, plan: dict):
    super().__init__()
    widths, self.num_classes = plan["widths"], plan["num_classes"]
    self.network_size = 4 * 2 ** (len(widths) - 1)
    self.pad_value = plan["pad_value"]
    self.from_rgb = EqualizedConv(image_shape[2], widths[0], 1)
    self.blocks = nn.ModuleList()
    nexts = list(widths[1:]) + [widths[-1]]
    c_in = widths[0]
    for width, next_width in list(zip(widths, nexts))[:-1]:
      self.blocks.append(nn.ModuleDict({"skip": EqualizedConv(c_in, next_width, 1, bias=False),
                                        "conv0": EqualizedConv(c_in, width, 3),
                                        "conv1": EqualizedConv(width, next_width, 3)}))
      c_in = next_width
    self.final_conv = EqualizedConv(c_in + 1, widths[-1], 3)
    self.fc = EqualizedLinear(widths[-1] * 16, widths[-1])
    self.out = EqualizedLinear(widths[-1], 1)
    self.class_embed = EqualizedLinear(self.num_classes, widths[-1]) if self.num_classes else None

  def forward(self, images, labels=None):
    pad = self.network_size - images.shape[2]
    if pad:
      images = F.pad(images, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=self.pad_value)
    half = lambda t: F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    x = F.leaky_relu(self.from_rgb(images), LEAKY)
    for block in self.blocks:
      skip = block["skip"](half(x))
      h = F.leaky_relu(block["conv1"](F.leaky_relu(block["conv0"](x), LEAKY)), LEAKY)
      x = (skip + half(h)) / math.sqrt(2.0)
    x = F.leaky_relu(self.final_conv(minibatch_stddev(x)), LEAKY)
    # Flattened in NHWC order as in gan_jax (the order does not change the cost).
    features = F.leaky_relu(self.fc(x.permute(0, 2, 3, 1).flatten(1)), LEAKY)
    logits = self.out(features)[:, 0]
    if self.class_embed is not None:
      embedding = self.class_embed(F.one_hot(labels, self.num_classes).to(features.dtype))
      logits = logits + (embedding * features).sum(-1) / math.sqrt(features.shape[-1])
    return logits, None


def r1_penalty(d: Callable, real, labels, gamma: float, interval: int):
  """gan_jax.losses.r1_penalty: gamma / 2 * interval * mean ||grad_x D(x)||^2 on the reals."""
  real = real.detach().requires_grad_(True)
  (grads,) = torch.autograd.grad(d(real, labels)[0].sum(), real, create_graph=True)
  return 0.5 * gamma * interval * grads.flatten(1).square().sum(-1).mean()
