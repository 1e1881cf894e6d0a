"""PyTorch mirror of gan_jax's class-conditioned diffusion U-Net (gan_jax.models.unet) and its train step.

For the latent model the frozen first stage's encoder (gan_jax.models.kl_autoencoder) encodes
each batch first, without gradients, as the JAX step does; its decoder plays no part in a step.

Built from the `ConditionalDenoiser` plan with the same layers and parameter count (a test
checks it): sinusoidal timestep embedding and its two-layer MLP, ResNet blocks of
GroupNorm-SiLU-conv with the embedding added in between (Flax's GroupNorm epsilon 1e-6),
stride-2 convolutions down, nearest resizing to the skip connection's shape and a 3x3
convolution up, self-attention at the lowest resolution, cross-attention to the class
tokens on the levels the plan names. The step is `gan_jax.diffusion.steps.make_denoiser_step`'s:
label dropout to the null token, t ~ U{0..T-1}, x_t from the same schedule (read from
`gan_jax.diffusion.schedule`), the mean squared error of the epsilon or v target, AdamW
without weight decay, and the EMA update of the parameters. Not mirrored: the non-finite
guard (a finiteness test of the gradients and one conditional copy of the state). Initialisation
differs (it does not affect speed).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gan_jax.diffusion import schedule as schedule_lib
from gan_jax.models import unet

_EPS = 1e-6  # Flax's GroupNorm and LayerNorm epsilon


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
  half = dim // 2
  freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
  angles = t.float()[:, None] * freqs[None, :]
  return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class ResBlock(nn.Module):

  def __init__(self, c_in: int, features: int, temb_dim: int, dropout_rate: float):
    super().__init__()
    self.norm0 = nn.GroupNorm(unet.norm_groups(c_in), c_in, eps=_EPS)
    self.conv0 = nn.Conv2d(c_in, features, 3, padding=1)
    self.temb = nn.Linear(temb_dim, features)
    self.norm1 = nn.GroupNorm(unet.norm_groups(features), features, eps=_EPS)
    self.dropout = nn.Dropout(dropout_rate)
    self.conv1 = nn.Conv2d(features, features, 3, padding=1)
    self.skip = nn.Conv2d(c_in, features, 1) if c_in != features else None

  def forward(self, x, temb):
    h = self.conv0(F.silu(self.norm0(x))) + self.temb(F.silu(temb))[:, :, None, None]
    h = self.conv1(self.dropout(F.silu(self.norm1(h))))
    return (x if self.skip is None else self.skip(x)) + h


class CrossAttention(nn.Module):
  """x + out(attention(q(norm x), k(context), v(context))) over the image tokens; context None: self-attention."""

  def __init__(self, channels: int, context_dim: int, heads: int):
    super().__init__()
    self.norm, self.heads = nn.LayerNorm(channels, eps=_EPS), heads
    self.query = nn.Linear(channels, channels, bias=False)
    self.key = nn.Linear(context_dim, channels, bias=False)
    self.value = nn.Linear(context_dim, channels, bias=False)
    self.out = nn.Linear(channels, channels)

  def forward(self, x, context=None):
    b, c, h, w = x.shape
    tokens = self.norm(x.flatten(2).transpose(1, 2))
    context = tokens if context is None else context
    split = lambda y: y.reshape(b, y.shape[1], self.heads, c // self.heads).transpose(1, 2)
    q, k, v = split(self.query(tokens)), split(self.key(context)), split(self.value(context))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.heads), dim=-1)
    out = self.out((weights @ v).transpose(1, 2).reshape(b, h * w, c))
    return x + out.transpose(1, 2).reshape(b, c, h, w)


class ConditionalDenoiser(nn.Module):
  """gan_jax's ConditionalDenoiser: (x_t [B, C, H, W], t [B], labels [B]) -> prediction [B, C, H, W]."""

  def __init__(self, in_channels: int, plan: dict):
    super().__init__()
    widths, heads, context_dim = plan["widths"], plan["heads"], plan["context_dim"]
    self.cross_levels, self.blocks, self.w0 = set(plan["cross_attention_levels"]), plan["blocks_per_level"], widths[0]
    self.context_dim = context_dim
    self.class_tokens = nn.Embedding(plan["num_classes"] + 1, context_dim)
    temb_dim = 4 * widths[0]
    self.temb = nn.Sequential(nn.Linear(widths[0], temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
    block = lambda c_in, features: ResBlock(c_in, features, temb_dim, plan["dropout_rate"])
    attend = lambda level, c: CrossAttention(c, context_dim, heads) if level in self.cross_levels else None
    self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
    self.down, skips, c = nn.ModuleList(), [widths[0]], widths[0]
    for level, width in enumerate(widths):
      stage = nn.ModuleDict({"downsample": nn.Conv2d(c, width, 3, stride=2, padding=1)} if level else {})
      stage["blocks"] = nn.ModuleList(block(width, width) for _ in range(self.blocks))  # after the downsample
      stage["attend"] = nn.ModuleList(filter(None, (attend(level, width) for _ in range(self.blocks))))
      skips += [width] * (self.blocks + (1 if level else 0))
      c = width
      self.down.append(stage)
    self.mid0, self.mid_self = block(c, c), CrossAttention(c, c, heads)
    self.mid_cross, self.mid1 = CrossAttention(c, context_dim, heads), block(c, c)
    self.up = nn.ModuleList()
    for level in reversed(range(len(widths))):
      stage = nn.ModuleDict()
      blocks = []
      for _ in range(self.blocks + 1):
        blocks.append(block(c + skips.pop(), widths[level]))
        c = widths[level]
      stage["blocks"] = nn.ModuleList(blocks)
      stage["attend"] = nn.ModuleList(filter(None, (attend(level, c) for _ in range(self.blocks + 1))))
      if level:
        stage["upsample"] = nn.Conv2d(c, widths[level - 1], 3, padding=1)
        c = widths[level - 1]
      self.up.append(stage)
    self.norm_out = nn.GroupNorm(unet.norm_groups(c), c, eps=_EPS)
    self.conv_out = nn.Conv2d(c, plan["out_channels"], 3, padding=1)

  def forward(self, x, t, labels):
    context = self.class_tokens(labels).reshape(labels.shape[0], -1, self.context_dim)
    temb = self.temb(timestep_embedding(t, self.w0))
    run = lambda stage, i, h: stage["attend"][i](h, context) if len(stage["attend"]) else h
    h = self.conv_in(x)
    skips = [h]
    for stage in self.down:
      if "downsample" in stage:
        h = stage["downsample"](h)
        skips.append(h)
      for i, block in enumerate(stage["blocks"]):
        h = run(stage, i, block(h, temb))
        skips.append(h)
    h = self.mid1(self.mid_cross(self.mid_self(self.mid0(h, temb)), context), temb)
    for stage in self.up:
      for i, block in enumerate(stage["blocks"]):
        h = run(stage, i, block(torch.cat([h, skips.pop()], dim=1), temb))
      if "upsample" in stage:
        h = stage["upsample"](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
    return self.conv_out(F.silu(self.norm_out(h)))


class _AEBlock(nn.Module):
  """gan_jax.models.kl_autoencoder._Block: GroupNorm-SiLU-conv twice, a 1x1 skip when widths differ."""

  def __init__(self, c_in: int, features: int):
    super().__init__()
    self.body = nn.Sequential(nn.GroupNorm(unet.norm_groups(c_in), c_in, eps=_EPS), nn.SiLU(),
                              nn.Conv2d(c_in, features, 3, padding=1),
                              nn.GroupNorm(unet.norm_groups(features), features, eps=_EPS), nn.SiLU(),
                              nn.Conv2d(features, features, 3, padding=1))
    self.skip = nn.Conv2d(c_in, features, 1) if c_in != features else nn.Identity()

  def forward(self, x):
    return self.skip(x) + self.body(x)


class KLEncoder(nn.Module):
  """gan_jax's KLAutoencoder encoder: images -> (mean, clipped log-variance) of the latent Gaussian."""

  def __init__(self, plan: dict):
    super().__init__()
    widths, channels = plan["widths"], plan["image_shape"][2]
    layers, c = [nn.Conv2d(channels, widths[0], 3, padding=1)], widths[0]
    for width in widths:  # a stride-2 3x3 convolution after each block ('SAME' shifts the window: equal cost)
      layers += [_AEBlock(c, width), nn.Conv2d(width, width, 3, stride=2, padding=1)]
      c = width
    layers += [_AEBlock(c, c), nn.GroupNorm(unet.norm_groups(c), c, eps=_EPS), nn.SiLU(),
               nn.Conv2d(c, 2 * plan["latent_channels"], 3, padding=1)]
    self.net = nn.Sequential(*layers)

  def forward(self, x):
    mean, logvar = self.net(x).chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def build_models(spec: dict) -> dict[str, nn.Module]:
  """{'model'} for the pixel DDPM; with the latent model also the first stage's 'encoder', frozen."""
  modules = {"model": ConditionalDenoiser(spec.get("data_shape", spec["image_shape"])[2], spec["denoiser"])}
  if spec.get("first_stage"):
    modules["encoder"] = KLEncoder(spec["first_stage"]).requires_grad_(False)
  return modules


def make_step(spec: dict, calls: dict, modules: dict, autocast):
  """`step(images, labels)`: one denoising update on images[0] with labels[0], then the EMA."""
  model, params = calls["model"], list(modules["model"].parameters())
  optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=0.0)
  ema = [p.detach().clone() for p in params]
  alpha_bars = np.array(schedule_lib.make(spec["schedule"], spec["diffusion_steps"]).alpha_bars)  # a writable copy
  tables = {}  # the schedule on the batch's device, copied there once
  num_classes, num_steps = spec["num_classes"], spec["diffusion_steps"]

  encoder = calls.get("encoder")

  def step(images: list, labels):
    x0, y = images[0], labels[0]
    if encoder is not None:  # the frozen first stage: a draw from its latent Gaussian (scale 1 here)
      with torch.no_grad():
        mean, logvar = encoder(x0)
        x0 = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    ab_table = tables.setdefault(x0.device, torch.as_tensor(alpha_bars, device=x0.device))
    y = torch.where(torch.rand(y.shape, device=y.device) < spec["label_dropout"], num_classes, y)
    t = torch.randint(0, num_steps, y.shape, device=y.device)
    noise = torch.randn_like(x0)
    ab = ab_table[t][:, None, None, None]
    x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise
    target = noise if spec["prediction"] == "epsilon" else ab.sqrt() * noise - (1.0 - ab).sqrt() * x0
    with autocast():
      loss = (model(x_t, t, y).float() - target).square().mean()
    for param, grad in zip(params, torch.autograd.grad(loss, params)):
      param.grad = grad
    optimizer.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, params, 1.0 - spec["ema_decay"])  # pylint: disable=protected-access

  return step
