"""PyTorch mirror of gan_jax's pix2pix and CycleGAN networks (gan_jax.models.translation) and train step.

Built from the generator and critic plans with the same layers and parameter count (a test
checks it): the U-Net of 4x4 stride-2 convolutions with skip connections and dropout, the
ResNet generator with reflection padding, the PatchGAN, instance normalisation without
affine parameters and no bias before it. The step is `gan_jax.translation.step.make_train_step`'s:
the generators' objective (pix2pix: adversarial + lambda_L1 L1 against the conditional critic;
CycleGAN: adversarial + lambda cycle consistency + the identity term), the critics' loss on the
reals and on the shown fakes (CycleGAN's from a history pool of `pool_size` images, a per-image
loop as in the CycleGAN authors' code), then Adam on both, each player's gradients taken with
the other's parameters as they were. Not mirrored: the learning-rate decay (constant in the
first half of training, and a scalar either way) and the non-finite guard. Initialisation differs.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from benchmarks import torch_gan_losses


def _norm(kind: str, channels: int) -> nn.Module:
  return nn.InstanceNorm2d(channels, eps=1e-5) if kind == "instance" else nn.Identity()


class UNetGenerator(nn.Module):
  """gan_jax's UNetGenerator: [B, C_in, S, S] -> tanh images [B, C_out, S, S]."""

  def __init__(self, in_channels: int, side: int, plan: dict):
    super().__init__()
    depth, width, norm = side.bit_length() - 1, plan["width"], plan["norm"]
    widths = [width * min(2 ** i, 8) for i in range(depth)]
    self.depth, self.down, self.up = depth, nn.ModuleList(), nn.ModuleList()
    c = in_channels
    for i, w in enumerate(widths):
      normed = 0 < i < depth - 1
      self.down.append(nn.Sequential(nn.LeakyReLU(0.2) if i else nn.Identity(),
                                     nn.Conv2d(c, w, 4, 2, 1, bias=norm == "none" or not normed),
                                     _norm(norm, w) if normed else nn.Identity()))
      c = w
    dropout = min(plan["dropout_blocks"], depth - 1)
    for block, i in enumerate(reversed(range(depth))):
      c_in = widths[i] if i == depth - 1 else 2 * widths[i]
      out = plan["out_channels"] if i == 0 else widths[i - 1]
      layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, out, 4, 2, 1, bias=norm == "none" or i == 0)]
      if i == 0:
        layers.append(nn.Tanh())
      else:
        layers += [_norm(norm, out), nn.Dropout(0.5) if block < dropout else nn.Identity()]
      self.up.append(nn.Sequential(*layers))

  def forward(self, x):
    skips = []
    for layer in self.down:
      x = layer(x)
      skips.append(x)
    for block, layer in enumerate(self.up):
      i = self.depth - 1 - block
      x = layer(x if i == self.depth - 1 else torch.cat([x, skips[i]], dim=1))
    return x


class ResidualBlock(nn.Module):

  def __init__(self, channels: int, norm: str):
    super().__init__()
    bias = norm == "none"
    self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                              _norm(norm, channels), nn.ReLU(), nn.ReflectionPad2d(1),
                              nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels))

  def forward(self, x):
    return x + self.body(x)


class ResnetGenerator(nn.Sequential):
  """gan_jax's ResnetGenerator: c7s1-w, d2w, d4w, R4w x n, u2w, uw, c7s1-C, tanh."""

  def __init__(self, in_channels: int, side: int, plan: dict):
    width, norm = plan["width"], plan["norm"]
    bias = norm == "none"
    blocks = plan["num_blocks"] or (9 if side >= 256 else 6)
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=bias), _norm(norm, width), nn.ReLU()]
    for c_in, c_out in ((width, 2 * width), (2 * width, 4 * width)):
      layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=bias), _norm(norm, c_out), nn.ReLU()]
    layers += [ResidualBlock(4 * width, norm) for _ in range(blocks)]
    for c_in, c_out in ((4 * width, 2 * width), (2 * width, width)):  # 'SAME' stride-2 transposed: exactly 2x
      layers += [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1, bias=bias), _norm(norm, c_out), nn.ReLU()]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, plan["out_channels"], 7), nn.Tanh()]
    super().__init__(*layers)


class PatchDiscriminator(nn.Sequential):
  """gan_jax's PatchDiscriminator: C(w)-C(2w)-... (stride 2 x num_layers, then stride 1), 1-channel logits."""

  def __init__(self, in_channels: int, plan: dict):
    width, norm = plan["width"], plan["norm"]
    strides = [2] * plan["num_layers"] + [1]
    layers, c = [], in_channels
    for i, stride in enumerate(strides):
      w = width * min(2 ** i, 8)
      layers += [nn.Conv2d(c, w, 4, stride, 1, bias=norm == "none" or i == 0)]
      layers += [_norm(norm, w)] if i else []
      layers.append(nn.LeakyReLU(0.2))
      c = w
    layers.append(nn.Conv2d(c, 1, 4, 1, 1))
    super().__init__(*layers)


_GENERATORS = {"UNetGenerator": UNetGenerator, "ResnetGenerator": ResnetGenerator}


def build_models(spec: dict) -> dict[str, nn.Module]:
  """{'g_ab', ('g_ba'), 'd_b', ('d_a')} of a translation spec."""
  channels = {domain: shape[-1] for domain, shape in spec["inputs"].items()}
  side = spec["image_shape"][0]
  modules = {f"g_{d}": _GENERATORS[p["kind"]](channels[d[0]], side, p) for d, p in spec["generators"].items()}
  for domain, p in spec["critics"].items():
    extra = channels["a"] if spec["conditional_critic"] else 0
    modules[f"d_{domain}"] = PatchDiscriminator(channels[domain] + extra, p)
  return modules


class HistoryPool:
  """The CycleGAN authors' image buffer: each new image is shown, or with p 0.5 (once full) swapped for a stored one."""

  def __init__(self, capacity: int):
    self.capacity, self.images = capacity, []

  def query(self, images):
    if self.capacity == 0:
      return images
    shown = []
    for image in images.detach():
      if len(self.images) < self.capacity:
        self.images.append(image)
        shown.append(image)
      elif random.random() < 0.5:
        slot = random.randrange(self.capacity)
        shown.append(self.images[slot])
        self.images[slot] = image
      else:
        shown.append(image)
    return torch.stack(shown)


def make_step(spec: dict, calls: dict, modules: dict, autocast):
  """`step(a_batches, b_batches)`: one generator and one critic update on a_batches[0], b_batches[0]."""
  g_params = [p for name, m in modules.items() if name.startswith("g_") for p in m.parameters()]
  d_params = [p for name, m in modules.items() if name.startswith("d_") for p in m.parameters()]
  betas = (spec["b1"], spec["b2"])
  g_opt, d_opt = torch.optim.Adam(g_params, spec["lr"], betas), torch.optim.Adam(d_params, spec["lr"], betas)
  d_loss_fn, g_loss_fn = torch_gan_losses.D_LOSSES[spec["loss"]], torch_gan_losses.G_LOSSES[spec["loss"]]
  conditional = spec["conditional_critic"]
  pools = {d: HistoryPool(spec["pool_size"]) for d in spec["critics"]} if spec["method"] == "cyclegan" else {}
  source = {"a": "b", "b": "a"}
  critic = lambda domain, images, real: calls[f"d_{domain}"](
      torch.cat([real[source[domain]], images], dim=1) if conditional else images)
  l1 = lambda x, y: (x - y).abs().mean()

  def generator_objective(a, b):
    real = {"a": a, "b": b}
    if spec["method"] == "pix2pix":
      fake_b = calls["g_ab"](a)
      total = spec["gan_weight"] * g_loss_fn(critic("b", fake_b, real)) + spec["l1_weight"] * l1(fake_b, b)
      return total, {"b": fake_b}
    g_ab, g_ba = calls["g_ab"], calls["g_ba"]
    fake_b, fake_a = g_ab(a), g_ba(b)
    cycle = l1(g_ba(fake_b), a) + l1(g_ab(fake_a), b)
    adversarial = g_loss_fn(critic("b", fake_b, real)) + g_loss_fn(critic("a", fake_a, real))
    total = spec["gan_weight"] * adversarial + spec["cycle_weight"] * cycle
    if spec["identity_weight"] > 0 and a.shape[1] == b.shape[1]:
      identity = l1(g_ab(b), b) + l1(g_ba(a), a)
      total = total + spec["cycle_weight"] * spec["identity_weight"] * identity
    return total, {"b": fake_b, "a": fake_a}

  def step(a_batches: list, b_batches: list):
    a, b = a_batches[0], b_batches[0]
    with autocast():
      g_loss, fakes = generator_objective(a, b)
    g_grads = torch.autograd.grad(g_loss, g_params)
    shown = {d: pools[d].query(f) if d in pools else f.detach() for d, f in fakes.items()}
    real = {"a": a, "b": b}
    with autocast():
      d_loss = sum(d_loss_fn(critic(d, real[d], real), critic(d, shown[d], real)) for d in spec["critics"])
    d_grads = torch.autograd.grad(d_loss, d_params)
    for params, grads in ((g_params, g_grads), (d_params, d_grads)):
      for param, grad in zip(params, grads):
        param.grad = grad
    g_opt.step()
    d_opt.step()

  return step


def synthetic_batch(spec: dict, device, channels_last: bool) -> tuple[list, list]:
  """([a], [b]): one minibatch [B, C, S, S] per domain in [-1, 1]."""
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  draw = lambda shape: (2.0 * torch.rand((spec["batch_size"], shape[2], shape[0], shape[1]), device=device)
                        - 1.0).contiguous(memory_format=fmt)
  return [draw(spec["inputs"]["a"])], [draw(spec["inputs"]["b"])]
