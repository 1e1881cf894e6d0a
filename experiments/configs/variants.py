"""The variant check shared by the config files (the text after ':' in --config=path.py:variant)."""
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
