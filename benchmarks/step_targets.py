"""What the step benchmark trains: a registry of benchmark models and the pure train step of each.

A benchmark model is named after the training config it mirrors (experiments/configs/<name>.py;
a test keeps the settings here equal to that config's) and is built from the library's own
modules, optimisers and step functions, so the benchmark times exactly what training runs. Kinds:

* GAN families (`gan_jax.models.FAMILIES`): `gan_step.make_train_step` with the family's recipe and
  the generator's moving average where the config keeps one; ProGAN at its last growth phase (the
  full resolution, faded in), where most of its steps run.
* 'classifier': the imbalance benchmark's CNN classifier.
* 'ddpm' and 'ldm': the class-conditioned diffusion U-Net (`diffusion.steps.make_denoiser_step`) on
  pixels, or on the latents of a frozen KL autoencoder that encodes every batch (latent diffusion).
* 'pix2pix' and 'cyclegan': the translation step (`translation.step.make_train_step`) on 32 px
  grayscale digits, the data of their configs.

Each `Target` carries a JSON-able `spec` (layer plans and step settings) from which
`benchmarks.torch_reference` builds its PyTorch mirror.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_jax import models
from gan_jax.data import sources
from gan_jax.diffusion import schedule as schedule_lib
from gan_jax.diffusion import steps as diffusion_steps
from gan_jax.diffusion import train as diffusion_train
from gan_jax.kernels import upsample
from gan_jax.models import kl_autoencoder
from gan_jax.train import classifier_step
from gan_jax.train import gan_step
from gan_jax.translation import step as translation_step
from gan_jax.translation import train as translation_train

# Benchmark model -> (kind: a GAN family, 'classifier', 'ddpm', 'ldm', 'pix2pix' or 'cyclegan'; data set or task).
# A GAN trains with its family's recipe at the train_gan configs' defaults: width 64, concat conditioning.
MODELS = {"mlp_gan_mnist": ("mlp_gan", "mnist"), "dcgan_mnist": ("dcgan", "mnist"),
          "dcgan_cifar10": ("dcgan", "cifar10"), "cgan_mnist": ("cgan", "mnist"), "acgan_mnist": ("acgan", "mnist"),
          "wgan_gp_mnist": ("wgan_gp", "mnist"), "stylegan2_mnist": ("stylegan2", "mnist"),
          "stylegan2_cifar10": ("stylegan2", "cifar10"), "progan_mnist": ("progan", "mnist"),
          "classifier": ("classifier", "mnist"), "ddpm_mnist": ("ddpm", "mnist"), "ldm_mnist": ("ldm", "mnist"),
          "pix2pix_edges2digits": ("pix2pix", "edges2digits"), "cyclegan_thin2thick": ("cyclegan", "thin2thick")}
# Where a model's train_gan config departs from _GAN_DEFAULTS (a test keeps them equal). StyleGAN2
# trains with lazy R1 (every 16 D updates) and style mixing; ADA is left out of the benchmark (an option
# of small-data training, not of the model). ProGAN's critic has the drift term; both keep a moving
# average of the generator's weights.
_MODEL_OVERRIDES = {"stylegan2_mnist": dict(width=32, r1_gamma=0.0002 * 32**2 / 64, r1_interval=16, g_ema_decay=0.998),
                    "stylegan2_cifar10": dict(width=64, r1_gamma=0.0002 * 32**2 / 64, r1_interval=16,
                                              g_ema_decay=0.998),
                    "progan_mnist": dict(drift_weight=1e-3, g_ema_decay=0.999)}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The classifier's optimiser: the usual Adam defaults (the imbalance benchmark's classifier).
_CLASSIFIER_CONFIG = dict(model="classifier", dataset="mnist", d_steps=1, lr=1e-3, b1=0.9, b2=0.999)
_GAN_DEFAULTS = dict(width=64, z_dim=0, conditioning="concat", upsample_impl="auto", spectral_norm=False,
                     aux_weight=1.0)
# The diffusion U-Net and objective (experiments/configs/diffusion_common.py at its full size); the latent
# model's denoiser is narrower and sees the frozen first stage's 7x7 latents.
_DIFFUSION_CONFIG = dict(dataset="mnist", blocks_per_level=2, heads=4, context_dim=64, dropout_rate=0.1,
                         schedule="linear", diffusion_steps=1_000, prediction="epsilon", label_dropout=0.1,
                         ema_decay=0.999, learning_rate=2e-4)
_DIFFUSION_MODELS = {"ddpm": dict(widths=(64, 128, 128)),
                     "ldm": dict(widths=(64, 128), latent_channels=4, ae_widths=(32, 64))}
# The translation configs' networks and objective at the papers' widths (experiments/configs/translation_common.py).
_TRANSLATION_CONFIG = dict(image_size=32, generator="", width_g=64, width_d=64, patch_size=16, dropout_blocks=3,
                           num_blocks=0, l1_weight=100.0, cycle_weight=10.0,
                           identity_weight=0.5, pool_size=50, num_steps=20_000, decay_steps=10_000, lr=2e-4, b1=0.5,
                           b2=0.999, jitter=False, flip=False)
_TRANSLATION_LOSSES = {"pix2pix": ("non_saturating", 1.0), "cyclegan": ("least_squares", 2.0)}
TRANSLATION_CHANNELS = (1, 1)  # edges2digits and thin2thick are grayscale on both sides


@dataclasses.dataclass(frozen=True)
class Options:
  """What to measure. Zero / empty fields keep the model config's value or a default."""
  model: str
  batch_size: int = 128
  steps: int = 50
  warmup: int = 5
  dtype: str = "float32"
  upsample_impl: str = ""
  width: int = 0
  steps_per_call: int = 1
  reuse_fakes: bool = False
  donate: bool = True
  threads: int = 0
  peak_size: int = 0
  data_examples: int = 60_000
  data_batches: int = 50
  seed: int = 0
  # Lazily regularised steps: also time the step's calls that run R1 (the counter set to fire it).
  time_parts: bool = True
  # XLA compiler options of the step, e.g. {"xla_backend_optimization_level": 1} to
  # compile faster in tests (the timings are then not representative).
  compiler_options: dict | None = None


@dataclasses.dataclass(frozen=True)
class Target:
  """A pure single train step and how to feed it.

  Attributes:
    step_fn: `step(state, batch) -> (state, metrics)`.
    init_fn: `init(key) -> state`.
    batch_lead: leading batch shape of one step ([d_steps, B] for GANs, [1, B] for translation, [B] otherwise).
    spec: JSON-able description of the model and step (what the PyTorch reference mirrors).
    flops_parts: `((step_fn, weight), ...)`: the usual step and the one with lazy R1 (on one step
      in `r1_interval`), whose FLOP counts and `step_fn`'s times of each kind, weighted, make the
      mean step; None: `step_fn` alone.
  """
  step_fn: Callable
  init_fn: Callable
  batch_lead: tuple[int, ...]
  spec: dict
  flops_parts: tuple[tuple[Callable, float], ...] | None = None


def kind(model: str) -> str:
  """The model's kind: a GAN family name, 'classifier', 'ddpm', 'ldm', 'pix2pix' or 'cyclegan'."""
  return MODELS[model][0]


def validate_options(opts: Options) -> None:
  """Raises ValueError naming the bad value and the allowed ones."""
  choices = {"model": (opts.model, MODELS), "dtype": (opts.dtype, tuple(DTYPES)),
             "upsample_impl": (opts.upsample_impl, ("",) + upsample.UPSAMPLE_IMPLS)}
  for name, (value, allowed) in choices.items():
    if value not in allowed:
      raise ValueError(f"Unknown {name} '{value}'; choose one of: {', '.join(a for a in allowed if a)}")
  for name in ("batch_size", "steps", "steps_per_call", "data_examples", "data_batches"):
    if getattr(opts, name) < 1:
      raise ValueError(f"{name} must be a positive integer, got {getattr(opts, name)}")
  for name in ("warmup", "width", "threads", "peak_size"):
    if getattr(opts, name) < 0:
      raise ValueError(f"{name} must be >= 0, got {getattr(opts, name)}")
  if opts.reuse_fakes and kind(opts.model) not in models.FAMILIES:
    raise ValueError(f"reuse_fakes applies to the GAN models; {opts.model} has no generator update to reuse fakes in")


def load_config(model: str) -> ml_collections.ConfigDict:
  """The training settings of a benchmark model, so d_steps, betas, widths etc. match training."""
  family, data = MODELS[model]
  if family == "classifier":
    return ml_collections.ConfigDict(_CLASSIFIER_CONFIG)
  if family in _DIFFUSION_MODELS:
    return ml_collections.ConfigDict({"model": family, **_DIFFUSION_CONFIG, **_DIFFUSION_MODELS[family]})
  if family in _TRANSLATION_LOSSES:
    loss, gan_weight = _TRANSLATION_LOSSES[family]
    return ml_collections.ConfigDict({"method": family, "data": data, "dataset": "mnist", **_TRANSLATION_CONFIG,
                                      "loss": loss, "gan_weight": gan_weight})
  recipe = models.get_family(family).recipe
  return ml_collections.ConfigDict({"model": family, "dataset": data, **_GAN_DEFAULTS,
                                    **dataclasses.asdict(recipe), **_MODEL_OVERRIDES.get(model, {})})


def plan(module) -> dict:
  """A Flax module's layer plan as plain JSON: its dataclass fields, tuples as lists."""
  skip = ("parent", "name", "dtype")
  to_json = lambda v: [to_json(x) for x in v] if isinstance(v, (tuple, list)) else v
  fields = {f.name: to_json(getattr(module, f.name)) for f in dataclasses.fields(module) if f.name not in skip}
  return {"kind": type(module).__name__, **fields}


def _common_spec(opts: Options, family: str, dataset: str, image_shape, num_classes: int, d_steps: int) -> dict:
  return {"model": opts.model, "family": family, "dataset": dataset, "image_shape": list(image_shape),
          "num_classes": num_classes, "batch_size": opts.batch_size, "d_steps": d_steps,
          "steps": opts.steps, "warmup": opts.warmup, "seed": opts.seed}


def _classifier_target(opts: Options, config, info) -> Target:
  shape = tuple(info.image_shape)
  model = models.CNNClassifier(num_classes=info.num_classes)
  tx = optax.adam(config.lr, b1=config.b1, b2=config.b2)
  spec = {**_common_spec(opts, "classifier", config.dataset, shape, info.num_classes, 1), "classifier": plan(model),
          "lr": config.lr, "b1": config.b1, "b2": config.b2, "compute_dtype": "float32", "output_range": [0.0, 1.0]}
  return Target(classifier_step.make_classifier_train_step(model, tx),
                lambda key: classifier_step.init_classifier_state(model, tx, key, shape), (opts.batch_size,), spec)


@flax.struct.dataclass
class LatentTrainState:
  """The latent denoiser's train state and the frozen first stage it encodes each batch with."""
  denoiser: diffusion_steps.TrainState
  first_stage: dict  # {'params', 'scale'}, passed through unchanged

  @property
  def params(self):
    """The trainable parameters: the denoiser's (the first stage is frozen)."""
    return self.denoiser.params


def _diffusion_target(opts: Options, config, info) -> Target:
  shape = tuple(info.image_shape)
  if opts.width:  # scale every level so that the first has `width` channels (the first stage's likewise)
    scale = lambda widths: tuple(max(1, w * opts.width // config.widths[0]) for w in widths)
    if "ae_widths" in config:
      config.ae_widths = scale(config.ae_widths)
    config.widths = scale(config.widths)
  latent = config.model == "ldm"
  first_stage = kl_autoencoder.KLAutoencoder(shape, config.latent_channels, tuple(config.ae_widths)) if latent else None
  data_shape = kl_autoencoder.latent_shape(shape, config.latent_channels) if latent else shape
  denoiser = diffusion_train.make_denoiser(config, info.num_classes, data_shape[-1])
  tx = diffusion_train.denoiser_optimizer(config)
  schedule = schedule_lib.make(config.schedule, config.diffusion_steps)
  cfg = diffusion_steps.DenoiserConfig(config.prediction, config.label_dropout, config.ema_decay)
  step = diffusion_steps.make_denoiser_step(denoiser, tx, schedule, cfg, info.num_classes,
                                            diffusion_steps.latent_encoder(first_stage) if latent else None)

  def init(key):
    params_key, stage_key = jax.random.split(key)
    state = diffusion_train.init_denoiser_state(denoiser, tx, data_shape, params_key)
    if not latent:
      return state
    stage_params = first_stage.init(stage_key, jnp.zeros((1,) + shape), stage_key)["params"]
    return LatentTrainState(state, {"params": stage_params, "scale": jnp.ones((), jnp.float32)})

  def latent_step(state: LatentTrainState, batch):
    denoiser_state, metrics = step(state.denoiser, batch, state.first_stage)
    return state.replace(denoiser=denoiser_state), metrics

  spec = {**_common_spec(opts, config.model, config.dataset, shape, info.num_classes, 1), "denoiser": plan(denoiser),
          "data_shape": list(data_shape), "first_stage": plan(first_stage) if latent else None,
          "schedule": config.schedule, "diffusion_steps": config.diffusion_steps, "prediction": cfg.prediction,
          "label_dropout": cfg.label_dropout, "ema_decay": cfg.ema_decay, "lr": config.learning_rate,
          "compute_dtype": "float32", "output_range": [-1.0, 1.0]}
  return Target(latent_step if latent else step, init, (opts.batch_size,), spec)


def _translation_target(opts: Options, config, info) -> Target:
  del info  # 32 px digits, padded from 28
  if opts.width:
    config.width_g = config.width_d = opts.width
  method, side = config.method, config.image_size
  translator = translation_train.build_translator(config, method, side, TRANSLATION_CHANNELS)
  objective = translation_train.objective_for(config, method)
  g_tx, d_tx = (translation_step.make_optimizer(config.lr, config.b1, config.b2, config.num_steps, config.decay_steps)
                for _ in range(2))
  jitter = translation_step.Jitter(config.jitter, config.flip)
  shape = (side, side, TRANSLATION_CHANNELS[0])
  spec = {**_common_spec(opts, method, config.data, shape, 0, 1), "method": method,
          "inputs": {"a": [side, side, TRANSLATION_CHANNELS[0]], "b": [side, side, TRANSLATION_CHANNELS[1]]},
          "generators": {d: plan(m) for d, m in translator.generators.items()},
          "critics": {c: plan(m) for c, m in translator.critics.items()},
          "conditional_critic": translator.method.conditional_critic, **dataclasses.asdict(objective),
          "pool_size": config.pool_size, "lr": config.lr, "b1": config.b1, "b2": config.b2,
          "compute_dtype": "float32", "output_range": [-1.0, 1.0]}
  return Target(translation_step.make_train_step(translator, objective, g_tx, d_tx, jitter),
                lambda key: translation_step.init_state(translator, g_tx, d_tx, key, config.pool_size),
                (1, opts.batch_size), spec)


def _gan_target(opts: Options, config, info) -> Target:
  shape = tuple(info.image_shape)
  width = opts.width or config.width
  impl = opts.upsample_impl or config.upsample_impl
  gan = models.build_gan(config.model, image_shape=shape, num_classes=info.num_classes,
                         z_dim=config.z_dim or None, width=width, conditioning=config.conditioning,
                         upsample_impl=impl, spectral_norm=config.spectral_norm, dtype=DTYPES[opts.dtype])
  cfg = gan_step.StepConfig(loss=config.loss, d_steps=config.d_steps, gp_weight=config.gp_weight,
                            aux_weight=config.aux_weight, reuse_fakes=opts.reuse_fakes,
                            r1_gamma=config.get("r1_gamma", 0.0), r1_interval=config.get("r1_interval", 16),
                            drift_weight=config.get("drift_weight", 0.0), g_ema_decay=config.get("g_ema_decay", 0.0))
  if gan.stage is not None:
    # The last growth phase as training runs it: its fade coefficient computed from the step counter
    # (1 from the first step on) and the reals blended to match.
    cfg = dataclasses.replace(cfg, fade_start=0, fade_steps=1)
  g_tx = gan_step.make_optimizer(config.lr_g, config.b1, config.b2)
  d_tx = gan_step.make_optimizer(config.lr_d, config.b1, config.b2)
  # Only the DCGAN-style families take a compute dtype (build_gan ignores it for the others).
  applied = opts.dtype if gan.name not in ("mlp_gan", "stylegan2", "progan") else "float32"
  spec = {**_common_spec(opts, gan.name, config.dataset, shape, info.num_classes, cfg.d_steps), "width": width,
          "z_dim": gan.z_dim, "upsample_impl": impl if gan.name != "mlp_gan" else "n/a", "loss": cfg.loss,
          "gp_weight": cfg.gp_weight, "aux_weight": cfg.aux_weight, "reuse_fakes": cfg.reuse_fakes,
          "r1_gamma": cfg.r1_gamma, "r1_interval": cfg.r1_interval, "drift_weight": cfg.drift_weight,
          "g_ema_decay": cfg.g_ema_decay, "fade": cfg.fade_steps > 0,
          "lr_g": config.lr_g, "lr_d": config.lr_d,
          "b1": config.b1, "b2": config.b2, "conditional": gan.conditional, "d_takes_labels": gan.d_takes_labels,
          "aux_classifier": gan.aux_classifier, "output_range": list(gan.output_range), "compute_dtype": applied,
          "generator": plan(gan.generator), "discriminator": plan(gan.discriminator)}
  step_fn = gan_step.make_train_step(gan, cfg, g_tx, d_tx)
  flops_parts = None
  if cfg.r1_gamma > 0 and cfg.r1_interval > 1:
    # XLA counts the R1 branch of the step's cond as if it ran every step; it runs on one in
    # r1_interval, so the mean step is weighted from a step without R1 and one that always has it.
    without_r1 = gan_step.make_train_step(gan, dataclasses.replace(cfg, r1_gamma=0.0), g_tx, d_tx)
    with_r1 = gan_step.make_train_step(gan, dataclasses.replace(cfg, r1_interval=1), g_tx, d_tx)
    flops_parts = ((without_r1, 1.0 - 1.0 / cfg.r1_interval), (with_r1, 1.0 / cfg.r1_interval))
  init = lambda key: gan_step.init_train_state(gan, g_tx, d_tx, key, shape, g_ema=cfg.g_ema_decay > 0)
  return Target(step_fn, init, (cfg.d_steps, opts.batch_size), spec, flops_parts)


_BUILDERS = {"classifier": _classifier_target, "ddpm": _diffusion_target, "ldm": _diffusion_target,
             "pix2pix": _translation_target, "cyclegan": _translation_target}


def build_target(opts: Options) -> Target:
  """The jit-able step, initialiser and description of `opts.model` at `opts`' settings."""
  validate_options(opts)
  config = load_config(opts.model)
  info = sources.get_dataset_info(sources.DataSource.from_config(
      ml_collections.ConfigDict({"dataset": config.dataset})))
  return _BUILDERS.get(kind(opts.model), _gan_target)(opts, config, info)


def synthetic_batch(spec: dict, lead: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
  """Random images in the model's output range [*lead, H, W, C] per input, and labels [*lead] if it has classes."""
  rng = np.random.default_rng(seed)
  lo, hi = spec["output_range"]
  inputs = spec.get("inputs") or {"image": spec["image_shape"]}
  batch = {name: rng.uniform(lo, hi, lead + tuple(shape)).astype(np.float32) for name, shape in inputs.items()}
  if spec["num_classes"]:
    batch["label"] = rng.integers(0, spec["num_classes"], lead).astype(np.int32)
  return batch
