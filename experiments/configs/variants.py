"""What the config files share: the variant check (the text after ':' in --config=path.py:variant)
and the data-source fields."""
from __future__ import annotations

from typing import Sequence


def check_variant(variant: str | None, allowed: Sequence[str]) -> str:
  """Returns the variant ('' for none) or raises ValueError listing the allowed ones."""
  variant = variant or ""
  if variant not in allowed:
    raise ValueError(f"Unknown config variant '{variant}'; choose one of: {', '.join(v or '(none)' for v in allowed)}")
  return variant


def load(name: str, variant: str | None = None, **overrides):
  """experiments/configs/<name>.py's config for `variant`, with top-level `overrides` applied."""
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"experiments.configs.{name}").get_config(variant)
  for key, value in overrides.items():
    config[key] = value
  return config


def add_source_fields(config) -> None:
  """The fields that convert a data set's images, next to `config.dataset`.

  `config.dataset` is a built-in name (mnist, fashion_mnist, cifar10), 'tfds:<name>[:<version>]'
  or 'folder:<path>' (one sub-folder per class, optional train/ and test/ trees).
  """
  config.image_size = 0  # > 0: pad each image to a square, then resize it (Lanczos); 0 keeps the source's size
  config.channels = 0  # 1 grayscale, 3 RGB, 0 the source's own
  config.test_fraction = 0.2  # share of each class held out as the test split when the source has none
  config.strict_images = False  # True refuses a file in an image folder that is not an image (default: skip, warn)
