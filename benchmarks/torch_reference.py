"""PyTorch mirror of gan_jax's models and train steps: the reference of `experiments.benchmark --reference=torch`.

The layers are built from the layer plans that `benchmarks.step_targets` reads off the
Flax modules (spec['generator'], spec['discriminator'], spec['classifier']), so
both sides run the same layers with the same shapes; a test checks the parameter
counts are equal. The step is the same computation as `gan_jax.train.gan_step`:
d_steps discriminator updates (fakes from G in training mode, no gradient to G),
then one generator update, Adam with the config's betas, the losses of
`gan_jax.losses`, the gradient penalty and the ACGAN class terms; with
spec['reuse_fakes'] the generator update reuses the last discriminator update's
fakes, as gan_jax does (and PyTorch's DCGAN example). Initialisation
differs (it does not affect speed). Not mirrored: gan_jax's non-finite guard
(a finiteness test of the new state and one conditional copy of it, a small share of the step). StyleGAN2, ProGAN,
the diffusion U-Net and the translation networks have their own mirror modules
(torch_stylegan2, torch_progan, torch_unet, torch_translation).

PyTorch is an optional dependency: import this module only when the reference is
wanted; it fails with an ImportError saying how to install torch otherwise.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError("The PyTorch reference needs torch: pip install 'torch==2.13.0' "
                    "(the 'torch' extra of gan_jax)") from e

# pylint: disable=g-import-not-at-top  # the mirrors need torch, checked above
from benchmarks import torch_progan
from benchmarks import torch_stylegan2
from benchmarks import torch_translation
from benchmarks import torch_unet
from benchmarks.torch_gan_losses import D_LOSSES, G_LOSSES
# pylint: enable=g-import-not-at-top

_MAX_REASON_CHARS = 300

class Head(nn.Module):
  """gan_jax.models.layers.DiscriminatorHead: (logit [N], class logits or None)."""

  def __init__(self, features: int, num_classes: int, conditioning: str, aux_classifier: bool):
    super().__init__()
    self.adversarial = nn.Linear(features, 1)
    self.projection = nn.Embedding(num_classes, features) if conditioning == "projection" else None
    self.classifier = nn.Linear(features, num_classes) if aux_classifier else None

  def forward(self, features, labels):
    features = features.float()
    logit = self.adversarial(features)[:, 0]
    if self.projection is not None:
      logit = logit + (self.projection(labels) * features).sum(-1)
    return logit, (self.classifier(features) if self.classifier is not None else None)


class MLPGenerator(nn.Module):
  """gan_jax.models.mlp.MLPGenerator: Linear + LeakyReLU(0.2) stack, sigmoid output."""

  def __init__(self, z_dim: int, plan: dict):
    super().__init__()
    self.embed = nn.Embedding(plan["num_classes"], plan["embed_dim"]) if plan["num_classes"] > 0 else None
    sizes = [z_dim + (plan["embed_dim"] if self.embed is not None else 0)] + list(plan["hidden"])
    layers = [m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))]
    self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], math.prod(plan["image_shape"])), nn.Sigmoid())
    height, width, channels = plan["image_shape"]
    self.shape = (channels, height, width)

  def forward(self, z, labels=None):
    x = z if self.embed is None else torch.cat([z, self.embed(labels)], -1)
    return self.net(x).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
  """gan_jax.models.mlp.MLPDiscriminator: Linear + LeakyReLU(0.2) + Dropout stack, then the head."""

  def __init__(self, in_features: int, plan: dict):
    super().__init__()
    concat = plan["conditioning"] == "concat"
    self.embed = nn.Embedding(plan["num_classes"], plan["embed_dim"]) if concat else None
    sizes = [in_features + (plan["embed_dim"] if concat else 0)] + list(plan["hidden"])
    self.net = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:])
                               for m in (nn.Linear(a, b), nn.LeakyReLU(0.2), nn.Dropout(plan["dropout_rate"]))])
    self.head = Head(sizes[-1], plan["num_classes"], plan["conditioning"], plan["aux_classifier"])

  def forward(self, images, labels=None):
    x = images.flatten(1)
    if self.embed is not None:
      x = torch.cat([x, self.embed(labels)], -1)
    return self.head(self.net(x), labels)


def up_conv(c_in: int, c_out: int, kernel: int, stride: int, bias: bool) -> nn.ConvTranspose2d:
  """A transposed convolution whose output is stride x its input, like gan_jax's UpConv ('SAME')."""
  padding = math.ceil((kernel - stride) / 2)
  return nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, output_padding=2 * padding - (kernel - stride),
                            bias=bias)


class DCGANGenerator(nn.Module):
  """gan_jax.models.dcgan.DCGANGenerator: Linear stem, BatchNorm, ReLU, transposed convs, tanh."""

  def __init__(self, z_dim: int, plan: dict):
    super().__init__()
    self.embed = nn.Embedding(plan["num_classes"], plan["embed_dim"]) if plan["num_classes"] > 0 else None
    in_features = z_dim + (plan["embed_dim"] if self.embed is not None else 0)
    size, channels, kernel = plan["stem_size"], plan["stem_features"], plan["kernel_size"]
    self.stem_shape = (channels, size, size)
    self.stem = nn.Linear(in_features, size * size * channels, bias=False)
    # momentum 0.1 here is Flax's 0.9 (torch weighs the new batch, Flax the old average).
    blocks = [nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5), nn.ReLU()]
    for features, stride in plan["stages"]:
      blocks += [up_conv(channels, features, kernel, stride, bias=False), nn.BatchNorm2d(features, momentum=0.1),
                 nn.ReLU()]
      channels = features
    blocks += [up_conv(channels, plan["out_channels"], kernel, 2, bias=True), nn.Tanh()]
    self.body = nn.Sequential(*blocks)

  def forward(self, z, labels=None):
    x = z if self.embed is None else torch.cat([z, self.embed(labels)], -1)
    return self.body(self.stem(x).view(-1, *self.stem_shape)).float()


class DCGANDiscriminator(nn.Module):
  """gan_jax.models.dcgan.DCGANDiscriminator: stride-2 convs, LeakyReLU(0.2), Dropout, then the head."""

  def __init__(self, image_shape, plan: dict):
    super().__init__()
    height, width, channels = image_shape
    concat = plan["conditioning"] == "concat"
    self.plane = nn.Embedding(plan["num_classes"], height * width) if concat else None
    self.plane_shape = (1, height, width)
    kernel, layers, c_in = plan["kernel_size"], [], channels + (1 if concat else 0)
    for features in plan["widths"]:
      layers += [nn.Conv2d(c_in, features, kernel, 2, (kernel - 1) // 2), nn.LeakyReLU(0.2)]
      if plan["dropout_rate"] > 0:
        layers.append(nn.Dropout(plan["dropout_rate"]))
      c_in, height, width = features, math.ceil(height / 2), math.ceil(width / 2)
    self.net = nn.Sequential(*layers)
    self.head = Head(c_in * height * width, plan["num_classes"], plan["conditioning"], plan["aux_classifier"])

  def forward(self, images, labels=None):
    x = images
    if self.plane is not None:
      x = torch.cat([x, self.plane(labels).view(-1, *self.plane_shape).to(x.dtype)], 1)
    return self.head(self.net(x).flatten(1), labels)


class CNNClassifier(nn.Module):
  """gan_jax.models.CNNClassifier: two (3x3 conv, ReLU, 2x2 max-pool), dense, dropout, logits."""

  def __init__(self, image_shape, plan: dict):
    super().__init__()
    height, width, c_in = image_shape
    layers = []
    for features in plan["conv_widths"]:
      layers += [nn.Conv2d(c_in, features, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2)]
      c_in, height, width = features, height // 2, width // 2
    self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * height * width, plan["hidden"]), nn.ReLU(),
                             nn.Dropout(plan["dropout_rate"]), nn.Linear(plan["hidden"], plan["num_classes"]))

  def forward(self, images):
    return self.net(images)


# Kinds other than the GANs and the classifier: the module that mirrors them (build_models, make_step,
# synthetic_batch for the translation pair).
_MIRRORS = {"ddpm": torch_unet, "ldm": torch_unet, "pix2pix": torch_translation, "cyclegan": torch_translation}


def build_models(spec: dict) -> dict[str, nn.Module]:
  """{'g', 'd'} for a GAN spec or {'model'} for the classifier, from gan_jax.benchmark's spec."""
  if spec["family"] == "classifier":
    return {"model": CNNClassifier(spec["image_shape"], spec["classifier"])}
  if spec["family"] in _MIRRORS:
    return _MIRRORS[spec["family"]].build_models(spec)
  g_plan, d_plan = spec["generator"], spec["discriminator"]
  if g_plan["kind"] == "StyleGenerator":
    return {"g": torch_stylegan2.StyleGenerator(spec["z_dim"], g_plan),
            "d": torch_stylegan2.StyleDiscriminator(spec["image_shape"], d_plan)}
  if g_plan["kind"] == "PhaseGenerator":
    return {"g": torch_progan.PhaseGenerator(spec["z_dim"], g_plan),
            "d": torch_progan.PhaseDiscriminator(spec["image_shape"], d_plan)}
  if g_plan["kind"] == "MLPGenerator":
    return {"g": MLPGenerator(spec["z_dim"], g_plan), "d": MLPDiscriminator(math.prod(spec["image_shape"]), d_plan)}
  d = DCGANDiscriminator(spec["image_shape"], d_plan)
  if d_plan.get("spectral_norm"):
    # torch's parametrization: one power-iteration step per call from a persisted vector
    # (gan_jax runs 20 stateless steps; both are matrix-vector products, negligible here).
    for module in list(d.modules()):
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.utils.parametrizations.spectral_norm(module)
  return {"g": DCGANGenerator(spec["z_dim"], g_plan), "d": d}


def param_count(spec: dict) -> int:
  """Trainable parameters (a latent diffusion model's frozen encoder is not counted, as in JAX)."""
  return sum(p.numel() for m in build_models(spec).values() for p in m.parameters() if p.requires_grad)


def gradient_penalty(critic: Callable, real, fake, labels):
  """gan_jax.losses.gradient_penalty: mean (||grad critic(x_hat)|| - 1)^2 on random interpolates."""
  alpha = torch.rand((real.shape[0], 1, 1, 1), device=real.device, dtype=real.dtype)
  x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
  (grads,) = torch.autograd.grad(critic(x_hat, labels)[0].sum(), x_hat, create_graph=True)
  norms = torch.sqrt(grads.flatten(1).square().sum(-1) + 1e-12)
  return (norms - 1.0).square().mean()


def _apply(loss, params: list, optimizer) -> None:
  # Gradients w.r.t. these parameters only, like jax.grad of one player's objective:
  # autograd then skips the other player's weight gradients. Parameters the loss does not use
  # (ProGAN's older toRGB/fromRGB layers) get zero gradients, as under jax.grad.
  for param, grad in zip(params, torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)):
    param.grad = grad
  optimizer.step()


def make_gan_step(spec: dict, g: Callable, d: Callable, g_params: list, d_params: list, autocast) -> Callable:
  """`step(images, labels)`: gan_jax.train.gan_step's Algorithm 1 on [d_steps] lists of minibatches."""
  betas = (spec["b1"], spec["b2"])
  g_opt = torch.optim.Adam(g_params, lr=spec["lr_g"], betas=betas)
  d_opt = torch.optim.Adam(d_params, lr=spec["lr_d"], betas=betas)
  d_loss_fn, g_loss_fn = D_LOSSES[spec["loss"]], G_LOSSES[spec["loss"]]
  d_labels = lambda y: y if spec["d_takes_labels"] else None

  r1_gamma, r1_interval = spec.get("r1_gamma", 0.0), spec.get("r1_interval", 1)
  d_updates = [0]

  def d_objective(real, fake, labels):
    batch = real.shape[0]
    logits, class_logits = d(torch.cat([real, fake]), d_labels(torch.cat([labels, labels])))
    loss = d_loss_fn(logits[:batch], logits[batch:])
    if r1_gamma > 0 and d_updates[0] % r1_interval == 0:  # lazy R1, as gan_jax's step
      loss = loss + torch_stylegan2.r1_penalty(d, real, d_labels(labels), r1_gamma, r1_interval)
    d_updates[0] += 1
    if spec["gp_weight"] > 0:
      loss = loss + spec["gp_weight"] * gradient_penalty(d, real, fake, d_labels(labels))
    if spec.get("drift_weight", 0.0) > 0:  # ProGAN's drift term on the real scores
      loss = loss + spec["drift_weight"] * logits[:batch].float().square().mean()
    if spec["aux_classifier"]:
      loss = loss + spec["aux_weight"] * (F.cross_entropy(class_logits[:batch], labels)
                                          + F.cross_entropy(class_logits[batch:], labels))
    return loss

  reuse = spec.get("reuse_fakes", False)
  ema_decay = spec.get("g_ema_decay", 0.0)
  g_ema = [p.detach().clone() for p in g_params] if ema_decay > 0 else None
  fade = (lambda x: torch_progan.fade_reals(x, 1.0, spec["discriminator"])) if spec.get("fade") else None

  def step(images: list, labels):
    if fade is not None:  # ProGAN's phase: the reals blended as the generator's output is (alpha 1)
      images = [fade(x) for x in images]
    last = len(images) - 1
    for k, (real, y) in enumerate(zip(images, labels)):
      noise = torch.randn((real.shape[0], spec["z_dim"]), device=real.device)
      if reuse and k == last:  # keep G's graph: the generator update reuses these fakes
        with autocast():
          kept = g(noise, y)
        fake = kept.detach()
      else:
        with torch.no_grad(), autocast():
          fake = g(noise, y)
      with autocast():
        loss = d_objective(real, fake, y)
      _apply(loss, d_params, d_opt)
    y = labels[-1]
    with autocast():
      if not reuse:
        kept = g(torch.randn((y.shape[0], spec["z_dim"]), device=y.device), y)
      logits, class_logits = d(kept, d_labels(y))
      loss = g_loss_fn(logits)
      if spec["aux_classifier"]:
        loss = loss + spec["aux_weight"] * F.cross_entropy(class_logits, y)
    _apply(loss, g_params, g_opt)
    if g_ema is not None:
      with torch.no_grad():
        torch._foreach_lerp_(g_ema, g_params, 1.0 - ema_decay)  # pylint: disable=protected-access

  return step


def make_classifier_step(spec: dict, model: Callable, params: list, autocast) -> Callable:
  optimizer = torch.optim.Adam(params, lr=spec["lr"], betas=(spec["b1"], spec["b2"]))

  def step(images: list, labels):
    with autocast():
      loss = F.cross_entropy(model(images[0]), labels[0])
    _apply(loss, params, optimizer)

  return step


def synthetic_batch(spec: dict, device, channels_last: bool) -> tuple[list, object]:
  """d_steps image minibatches [B, C, H, W] in the output range, and labels [d_steps, B]."""
  height, width, channels = spec["image_shape"]
  lo, hi = spec["output_range"]
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  images = [(lo + (hi - lo) * torch.rand((spec["batch_size"], channels, height, width), device=device)
            ).contiguous(memory_format=fmt) for _ in range(spec["d_steps"])]
  labels = torch.randint(0, spec["num_classes"], (spec["d_steps"], spec["batch_size"]), device=device)
  return images, labels


def _time(step: Callable, batch, warmup: int, steps: int, sync: Callable) -> dict:
  """First call (eager warm-up or torch.compile compilation), then `steps` timed calls after the warm-up."""
  def once():
    start = time.perf_counter()
    step(*batch)
    sync()
    return time.perf_counter() - start

  first = once()
  for _ in range(max(warmup - 1, 1)):
    once()
  times = [once() for _ in range(steps)]
  median = statistics.median(times)
  images = sum(minibatch.shape[0] for minibatch in batch[0])
  return {"available": True, "compile_time_s": first, "step_time_median_s": median, "step_time_min_s": min(times),
          "step_time_max_s": max(times), "step_time_mean_s": statistics.fmean(times),
          "images_per_sec": images / median}


def _make_step(spec: dict, modules: dict, compiled: bool, autocast) -> Callable:
  calls = {name: torch.compile(m) if compiled else m for name, m in modules.items()}
  if spec["family"] == "classifier":
    return make_classifier_step(spec, calls["model"], list(modules["model"].parameters()), autocast)
  if spec["family"] in _MIRRORS:
    return _MIRRORS[spec["family"]].make_step(spec, calls, modules, autocast)
  return make_gan_step(spec, calls["g"], calls["d"], list(modules["g"].parameters()),
                       list(modules["d"].parameters()), autocast)


def run_reference(spec: dict, channels_last: bool = False, compile_step: bool = True) -> dict:
  """Times the PyTorch mirror of `spec` eagerly and (if possible) under torch.compile.

  Args:
    spec: `gan_jax.benchmark` spec plus 'threads' and 'platform'.
    channels_last: NHWC memory format for images and convolution weights.
    compile_step: also measure torch.compile; its failures are reported, not raised.

  Returns:
    {'eager': figures, 'compiled': figures or {'available': False, 'reason'}, 'param_count', ...}.
  """
  torch.manual_seed(spec["seed"])
  torch.set_num_threads(spec["threads"])
  device = torch.device("cuda" if spec["platform"] == "gpu" and torch.cuda.is_available() else "cpu")
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  bf16 = spec["compute_dtype"] == "bfloat16"
  autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
  modules = build_models(spec)
  fmt = torch.channels_last if channels_last else torch.preserve_format
  for module in modules.values():
    module.to(device=device, memory_format=fmt).train()
  batch = (torch_translation.synthetic_batch if spec["family"] in ("pix2pix", "cyclegan") else synthetic_batch)(
      spec, device, channels_last)
  result = {"param_count": sum(p.numel() for m in modules.values() for p in m.parameters() if p.requires_grad),
            "device": str(device), "threads": torch.get_num_threads(), "channels_last": channels_last,
            "autocast_bfloat16": bf16, "torch_version": torch.__version__}
  result["eager"] = _time(_make_step(spec, modules, False, autocast), batch, spec["warmup"], spec["steps"], sync)
  if not compile_step:
    result["compiled"] = {"available": False, "reason": "not requested"}
    return result
  try:
    torch._dynamo.reset()  # pylint: disable=protected-access  # a fresh cache per model
    result["compiled"] = _time(_make_step(spec, modules, True, autocast), batch, spec["warmup"], spec["steps"],
                               sync)
  except Exception as e:  # pylint: disable=broad-except  # report, never crash the benchmark
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:_MAX_REASON_CHARS]
    result["compiled"] = {"available": False, "reason": reason}
  return result


def time_conv_layer(layer: dict, batch_size: int, reps: int, threads: int = 0) -> dict:
  """Median forward and forward+backward seconds of one `gan_jax.layer_benchmark.ConvLayer` (as a dict).

  The same convolution as the JAX side (the mirror's `up_conv` or strided `Conv2d`), eager,
  NCHW, on the CPU; backward is the gradient of sum(y^2) for both input and weight.
  """
  if threads:
    torch.set_num_threads(threads)
  height, width, c_in = layer["in_shape"]
  k, stride = layer["kernel_size"], layer["stride"]
  if layer["direction"] == "up":
    module = up_conv(c_in, layer["features"], k, stride, bias=False)
  else:
    module = nn.Conv2d(c_in, layer["features"], k, stride, (k - 1) // 2, bias=False)
  x = torch.randn(batch_size, c_in, height, width, requires_grad=True)

  def forward_backward():
    module.zero_grad(set_to_none=True)
    x.grad = None
    module(x).square().sum().backward()

  def forward():
    with torch.no_grad():
      module(x)

  def median(fn):
    fn()  # warm-up
    times = []
    for _ in range(reps):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    return statistics.median(times)

  return {"forward_s": median(forward), "forward_backward_s": median(forward_backward),
          "threads": torch.get_num_threads()}
