"""The variant check shared by the config files (the text after ':' in --config=path.py:variant)."""
from __future__ import annotations

from typing import Sequence


def check_variant(variant: str | None, allowed: Sequence[str]) -> str:
  """Returns the variant ('' for none) or raises ValueError listing the allowed ones."""
  variant = variant or ""
  if variant not in allowed:
    raise ValueError(f"Unknown config variant '{variant}'; choose one of: {', '.join(v or '(none)' for v in allowed)}")
  return variant
