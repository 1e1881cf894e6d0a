"""Config checks shared by every entrypoint: each raises ValueError naming the field, the value and what is allowed.

Configs are read (and checked) at the top, before any data is loaded or any
program compiled, so a bad value costs seconds, not a training run.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def parse_list(value: Any) -> list[str]:
  """'a, b' / ('a', 'b') / 'a' -> ['a', 'b'], stripped, empty items dropped."""
  if isinstance(value, (list, tuple)):
    items = [str(v) for v in value]
  else:
    items = str(value).strip("()[] ").split(",")
  return [v.strip().strip("'\"") for v in items if v.strip().strip("'\"")]


def parse_int_list(value: Any, field: str) -> list[int]:
  """A comma-separated list (or sequence) of integers, e.g. '3,5' -> [3, 5]."""
  try:
    return [int(v) for v in parse_list(value)]
  except ValueError as e:
    raise ValueError(f"config.{field} must be comma-separated integers, got {value!r}") from e


def one_of(value: Any, allowed: Iterable[Any], field: str) -> Any:
  """`value` if it is one of `allowed`."""
  allowed = list(allowed)
  if value not in allowed:
    raise ValueError(f"Unknown {field} {value!r}; choose one of: {', '.join(map(str, allowed))}")
  return value


def choices(value: Any, allowed: Sequence[str], field: str, *, allow_empty: bool = False) -> list[str]:
  """A comma list of distinct names from `allowed`, in the order given."""
  names = parse_list(value)
  unknown = [n for n in names if n not in allowed]
  if unknown or (not names and not allow_empty):
    raise ValueError(f"Unknown {field} {unknown or value!r}; choose from: {', '.join(allowed)}")
  if len(set(names)) != len(names):
    raise ValueError(f"config.{field} lists a value twice: {value!r}")
  return names


def positive(value: Any, field: str) -> int:
  """`value` as an int if it is a positive integer."""
  if isinstance(value, bool) or int(value) != value or int(value) <= 0:
    raise ValueError(f"config.{field} must be a positive integer, got {value}")
  return int(value)


def non_negative(value: Any, field: str) -> float:
  if not math.isfinite(float(value)) or float(value) < 0:
    raise ValueError(f"config.{field} must be non-negative, got {value}")
  return value


def positive_number(value: Any, field: str) -> float:
  if not math.isfinite(float(value)) or float(value) <= 0:
    raise ValueError(f"config.{field} must be positive, got {value}")
  return float(value)


def in_range(value: Any, field: str, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> float:
  """`value` if it lies in the interval; the brackets of the message say which ends are included."""
  v = float(value)
  ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
  if not ok or not math.isfinite(v):
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    raise ValueError(f"config.{field} must lie in {left}{low:g}, {high:g}{right}, got {value}")
  return v


def all_positive(config: Any, fields: Iterable[str], prefix: str = "") -> None:
  """`positive` for each of `fields` of `config` (`prefix` names the section in messages)."""
  for field in fields:
    positive(config[field], prefix + field)
