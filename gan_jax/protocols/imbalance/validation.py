"""Checks the whole imbalance config before the first stage: top level, classifier, every generator section.

The top level owns the data (data set, profiles, seed); generator sections hold
model and training fields only, so there is no nested field the top level
silently overrides.
"""
from __future__ import annotations

import dataclasses
import os

import ml_collections

from gan_jax import checks
from gan_jax import workdir
from gan_jax.data import imbalance
from gan_jax.data import sources
from gan_jax.diffusion import train as diffusion_train
from gan_jax.protocols.imbalance import generators
from gan_jax.protocols.imbalance import methods as methods_lib
from gan_jax.train import classifier_loop
from gan_jax.train import gan_loop
from gan_jax.train import vae_loop

# Fields a rerun may change without invalidating finished stages: they only select what runs.
RESUMABLE_FIELDS = ("methods", "num_seeds")
# Run folders of earlier versions: fields added since (at their old behaviour) and the data
# fields generator sections used to copy from the top level.
MIGRATIONS = workdir.Migrations(added={
    "fill_remainder": "none", "filter_rounds": methods_lib.FILTER_ROUNDS,
    # The classifier recipe before the long-tail remedies: Adam at a constant rate, no decay, no augmentation.
    "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0,
    "decay_at": "0.8,0.9", "decay_factor": 0.01,
    # Settings of remedies those runs did not have: they changed nothing there.
    "crt_steps": 600, "combination_ratio": 0.5, "validation_per_class": 100, "la_tau": 1.0,
    "ldam_max_margin": 0.5, "ldam_scale": 30.0, "drw_beta": 0.9999, "mixup_alpha": 1.0, "remix": True,
    "remix_kappa": 3.0, "remix_tau": 0.5,
    # The CNN was the only classifier.
    "model": "cnn", "resnet_blocks": 5,
    # Inception metrics came later; 'auto' computes none for grayscale data or without weights.
    "inception_metrics": "auto", "fid_weights": ""}
) | gan_loop.MIGRATIONS | vae_loop.MIGRATIONS | diffusion_train.MIGRATIONS


def _generators_used(config: dict) -> set[str]:
  try:
    names = methods_lib.parse_methods(config.get("methods", ""))
  except ValueError:  # a method this version no longer has: keep every section in the comparison
    return set(config.get("generators", {}))
  return {methods_lib.get_method(n).generator for n in names} - {None}


def shared_generator_sections(old: dict, new: dict) -> tuple[dict, dict]:
  """Both configs with only the generator sections both runs use: a section only one of them uses
  (say one added to the config since) cannot have changed a result they share."""
  keep = _generators_used(old) & _generators_used(new)
  strip = lambda c: {**c, "generators": {k: v for k, v in c.get("generators", {}).items() if k in keep}}
  return strip(old), strip(new)


POSITIVE_FIELDS = ("num_seeds", "cas_per_class", "smote_k", "evaluator_steps", "cas_steps", "filter_rounds")
CLASSIFIER_POSITIVE = ("num_steps", "batch_size", "hidden", "crt_steps", "resnet_blocks")
# Stands in for the class counts of a split not yet loaded: profile names and lengths are checked
# before any data is read; whether a split has enough images is checked once it is.
_UNBOUNDED = 10**9


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a valid config asks for."""
  info: sources.DatasetInfo
  methods: tuple[methods_lib.Method, ...]
  imbalance: imbalance.ImbalanceSpec


def imbalance_spec(config: ml_collections.ConfigDict) -> imbalance.ImbalanceSpec:
  return imbalance.ImbalanceSpec.from_fields(config.profile, config.imbalance_rho, config.imbalance_n_max,
                                             config.imbalance_minority_classes, config.imbalance_fraction)


INCEPTION_METRICS = ("auto", "on", "off")


def uses_inception(config: ml_collections.ConfigDict, image_shape) -> bool:
  """Whether generated images get Inception FID, KID and precision/recall.

  'on': always (the weights must be given); 'auto': for RGB images when the weights are given
  (Inception features of grayscale digits say little; the evaluator-feature distance covers them);
  'off': never.
  """
  from gan_jax import inception  # pylint: disable=g-import-not-at-top
  mode = config.get("inception_metrics", "auto")
  given = bool(config.get("fid_weights", "") or os.environ.get(inception.WEIGHTS_ENV))
  return mode == "on" or (mode == "auto" and image_shape[-1] == 3 and given)


def validate(config: ml_collections.ConfigDict, num_devices: int) -> Plan:
  """Raises ValueError naming the first bad field (and what is allowed); returns the plan."""
  source = sources.DataSource.from_config(config)
  info = sources.get_dataset_info(source)
  methods = tuple(methods_lib.get_method(m) for m in methods_lib.parse_methods(config.methods))
  spec = imbalance_spec(config)
  spec.counts([_UNBOUNDED] * info.num_classes)
  if config.profile != imbalance.AS_IS:  # an as-is source is tested on its own test split only
    imbalance.profile_counts(config.test_profile, [_UNBOUNDED] * info.num_classes)
  checks.all_positive(config, POSITIVE_FIELDS)
  checks.non_negative(config.test_examples, "test_examples")
  checks.in_range(config.filter_confidence, "filter_confidence", 0.0, 1.0, high_open=True)
  checks.in_range(config.synthetic_ratio, "synthetic_ratio", 0.0, 10.0)
  checks.one_of(config.fill_remainder, methods_lib.FILL_REMAINDER, "fill_remainder")
  checks.in_range(config.combination_ratio, "combination_ratio", 0.0, config.synthetic_ratio)
  checks.non_negative(config.validation_per_class, "validation_per_class")
  checks.one_of(config.inception_metrics, INCEPTION_METRICS, "inception_metrics")
  if uses_inception(config, info.image_shape):
    from gan_jax import inception  # pylint: disable=g-import-not-at-top
    inception.weights_path(config.fid_weights)  # a missing file fails here, before any stage
  if config.profile == imbalance.AS_IS and config.validation_per_class > 0:
    raise ValueError(f"profile as_is trains on every train image, so none is left for the validation set: set "
                     f"--config.validation_per_class=0 (post-hoc logit adjustment then uses tau = la_tau = "
                     f"{config.la_tau}), got {config.validation_per_class}")
  checks.non_negative(config.la_tau, "la_tau")
  checks.in_range(config.ldam_max_margin, "ldam_max_margin", 0.0, 10.0, low_open=True)
  checks.positive_number(config.ldam_scale, "ldam_scale")
  checks.in_range(config.drw_beta, "drw_beta", 0.0, 1.0, high_open=True)
  checks.positive_number(config.mixup_alpha, "mixup_alpha")
  checks.in_range(config.remix_kappa, "remix_kappa", 1.0, 1e6)
  checks.in_range(config.remix_tau, "remix_tau", 0.0, 1.0)
  classifier = config.classifier
  checks.one_of(classifier.model, tuple(classifier_loop.MODELS), "classifier.model")
  checks.all_positive(classifier, CLASSIFIER_POSITIVE, "classifier.")
  for i, width in enumerate(checks.parse_int_list(classifier.conv_widths, "classifier.conv_widths")):
    checks.positive(width, f"classifier.conv_widths[{i}]")
  classifier_loop.Recipe.from_config(classifier)  # optimiser, schedule, augmentation
  checks.in_range(classifier.dropout_rate, "classifier.dropout_rate", 0.0, 1.0, high_open=True)
  checks.non_negative(classifier.log_every, "classifier.log_every")
  if classifier.batch_size % num_devices:
    raise ValueError(f"config.classifier.batch_size={classifier.batch_size} is not divisible by the number of "
                     f"devices ({num_devices})")
  for name, section in config.generators.items():
    generators.get(name).validate(section, info.image_shape, info.num_classes, num_devices, f"generators.{name}.")
  for method in methods:
    if method.generator and method.generator not in config.generators:
      raise ValueError(f"method '{method.name}' needs config.generators.{method.generator}")
  return Plan(info, methods, spec)
