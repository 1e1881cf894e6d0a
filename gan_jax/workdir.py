"""Run folders: record the config, refuse to mix two different runs in one folder.

A rerun with the same folder resumes; that is only meaningful with the same
config. Fields that do not change what is computed (how long to run, how often
to log) may change between reruns, so raising `num_steps` extends a finished run.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Iterable

import ml_collections

CONFIG_FILE = "config.json"
# Fields a rerun may change without changing the computation of earlier steps.
RESUMABLE_FIELDS = ("num_steps", "log_every", "checkpoint_every", "sample_every", "keep_checkpoints")
# Config fields added after runs were first recorded, with the value that computes what a
# run recorded without the field computed: such a config.json still matches (at any depth),
# so upgrading gan_jax does not make earlier runs refuse to resume.
ADDED_FIELD_DEFAULTS = {"train_classes": "", "g_ema_decay": 0.0, "spectral_norm": False, "reuse_fakes": False,
                        "fill_remainder": "none", "class_balanced": False, "augment": ""}


class WorkdirConflictError(ValueError):
  """The folder holds a run with a different config."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def backfill_added_fields(old, new):
  """`old` with every ADDED_FIELD_DEFAULTS field that `new` has and `old` lacks set to its default."""
  if not isinstance(old, dict) or not isinstance(new, dict):
    return old
  filled = {k: backfill_added_fields(v, new[k]) if k in new else v for k, v in old.items()}
  for k in new:
    if k not in filled and k in ADDED_FIELD_DEFAULTS:
      filled[k] = ADDED_FIELD_DEFAULTS[k]
  return filled


def config_differences(old: dict, new: dict, ignore: Iterable[str] = RESUMABLE_FIELDS) -> list[str]:
  """'field: old -> new' for every differing top-level field not in `ignore` (old backfilled first)."""
  old = backfill_added_fields(old, new)
  ignore = set(ignore)
  keys = sorted((set(old) | set(new)) - ignore)
  return [f"{k}: {old.get(k, '<missing>')!r} -> {new.get(k, '<missing>')!r}" for k in keys
          if old.get(k, "<missing>") != new.get(k, "<missing>")]


def _nonempty(path: str) -> bool:
  if os.path.isdir(path):
    return bool(os.listdir(path))
  return os.path.exists(path) and os.path.getsize(path) > 0


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool = False,
            outputs: Iterable[str] = ("checkpoints", "metrics.jsonl", "tensorboard", "samples"),
            resumable_fields: Iterable[str] = RESUMABLE_FIELDS) -> None:
  """Creates `workdir` and writes config.json, checking it against an earlier run's.

  Args:
    workdir: run folder.
    config: this run's config.
    overwrite: discard an earlier run with a different config (its `outputs`) instead of refusing.
    outputs: what an earlier run left in the folder, removed on overwrite.
    resumable_fields: fields allowed to differ from the earlier run.

  Raises:
    WorkdirConflictError: the folder holds outputs of a run with a different config and overwrite is False.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  new = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    diffs = config_differences(old, new, resumable_fields)
    # A run that failed before producing anything (say, a bad imbalance count)
    # must not block its corrected rerun.
    produced = [name for name in outputs if _nonempty(os.path.join(workdir, name))]
    if diffs and produced and not overwrite:
      raise WorkdirConflictError(
          f"{workdir} holds a run with a different config ({'; '.join(diffs)}); use another --workdir, "
          f"or pass --overwrite to discard that run")
    if diffs and produced:
      for name in produced:
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
          shutil.rmtree(target)
        elif os.path.exists(target):
          os.remove(target)
  write_json(path, new)


def write_json(path: str, payload: dict) -> None:
  """Writes JSON atomically (temporary file, then rename), so readers never see half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_json(path: str) -> dict:
  with open(path) as f:
    return json.load(f)
