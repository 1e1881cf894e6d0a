"""Run folders: record the config, refuse to mix two different runs in one folder.

A rerun with the same folder resumes; that is only meaningful with the same
config. Fields that do not change what is computed (how long to run, how often
to log) may change between reruns, so raising `num_steps` extends a finished run.
Each owner of a config type declares its `Migrations`: fields added since runs
were first recorded (with the value that computes what such a run computed) and
fields retired since, so upgrading gan_jax never makes an earlier run refuse to resume.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Callable, Any, Iterable, Mapping

import ml_collections

from gan_jax import fs

CONFIG_FILE = "config.json"
# Fields a rerun may change without changing the computation of earlier steps.
RESUMABLE_FIELDS = ("num_steps", "log_every", "checkpoint_every", "sample_every", "keep_checkpoints")
_MISSING = "<missing>"


class WorkdirConflictError(ValueError):
  """The folder holds a run with a different config."""


@dataclasses.dataclass(frozen=True)
class Migrations:
  """How configs recorded by earlier versions compare with today's (at any depth of the config).

  Attributes:
    added: field name -> the value that computes what a run recorded without the field computed.
    retired: field names an earlier version recorded and today's config no longer has.
  """
  added: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  retired: tuple[str, ...] = ()

  def __or__(self, other: "Migrations") -> "Migrations":
    return Migrations({**self.added, **other.added}, tuple(dict.fromkeys(self.retired + other.retired)))


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def upgrade(old: Any, new: Any, migrations: Migrations) -> Any:
  """`old` with the added fields `new` has filled in at their defaults and the retired ones `new` lacks dropped."""
  if not isinstance(old, dict) or not isinstance(new, dict):
    return old
  upgraded = {k: upgrade(v, new[k], migrations) if k in new else v for k, v in old.items()
              if k in new or k not in migrations.retired}
  for k in new:
    if k not in upgraded and k in migrations.added:
      upgraded[k] = migrations.added[k]
  return upgraded


def config_differences(old: dict, new: dict, ignore: Iterable[str] = RESUMABLE_FIELDS,
                       migrations: Migrations = Migrations(),
                       project: Callable[[dict, dict], tuple[dict, dict]] | None = None) -> list[str]:
  """'field: old -> new' for every differing top-level field not in `ignore` (old upgraded first).

  `project(old, new)` may then drop what cannot have changed a result (a protocol's sections
  of models one of the two runs does not use).
  """
  old = upgrade(old, new, migrations)
  if project is not None:
    old, new = project(old, new)
  ignore = set(ignore)
  keys = sorted((set(old) | set(new)) - ignore)
  return [f"{k}: {old.get(k, _MISSING)!r} -> {new.get(k, _MISSING)!r}" for k in keys
          if old.get(k, _MISSING) != new.get(k, _MISSING)]


def prepare(workdir: str, config: ml_collections.ConfigDict | Mapping, overwrite: bool = False,
            outputs: Iterable[str] = ("checkpoints", "metrics.jsonl", "tensorboard", "samples"),
            resumable_fields: Iterable[str] = RESUMABLE_FIELDS, migrations: Migrations = Migrations(),
            project: Callable[[dict, dict], tuple[dict, dict]] | None = None) -> None:
  """Creates `workdir` and writes config.json, checking it against an earlier run's.

  Args:
    workdir: run folder (local or a URL).
    config: this run's config.
    overwrite: discard an earlier run with a different config (its `outputs`) instead of refusing.
    outputs: what an earlier run left in the folder, removed on overwrite.
    resumable_fields: fields allowed to differ from the earlier run.
    migrations: how configs of earlier versions map onto this one.
    project: see `config_differences`.

  Raises:
    WorkdirConflictError: the folder holds outputs of a run with a different config and overwrite is False.
  """
  fs.makedirs(workdir)
  path = fs.join(workdir, CONFIG_FILE)
  new = config_to_dict(config) if isinstance(config, ml_collections.ConfigDict) else dict(config)
  if fs.exists(path):
    diffs = config_differences(fs.read_json(path), new, resumable_fields, migrations, project)
    # A run that failed before producing anything (say, a bad imbalance count)
    # must not block its corrected rerun.
    produced = [name for name in outputs if fs.nonempty(fs.join(workdir, name))]
    if diffs and produced and not overwrite:
      raise WorkdirConflictError(
          f"{workdir} holds a run with a different config ({'; '.join(diffs)}); use another --workdir, "
          f"or pass --overwrite to discard that run")
    if diffs:
      for name in produced:
        fs.remove(fs.join(workdir, name))
  fs.write_json(path, new)
