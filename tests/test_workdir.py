"""Run folders: config comparison across gan_jax versions, atomic JSON."""
import json

import ml_collections
import pytest

from gan_jax import workdir
from gan_jax.protocols.imbalance import validation

MIGRATIONS = workdir.Migrations(added={"fill_remainder": "none", "g_ema_decay": 0.0, "spectral_norm": False})


def _config(**fields):
  return ml_collections.ConfigDict(fields)


def test_fields_added_later_match_runs_recorded_without_them(tmp_path):
  old = {"seed": 0, "generators": {"cgan": {"width": 32, "loss": "hinge"}}}
  (tmp_path / "config.json").write_text(json.dumps(old))
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "1").write_text("x")
  # The new code records the added fields at their backward-compatible defaults: same run.
  same = _config(seed=0, fill_remainder="none",
                 generators={"cgan": {"width": 32, "loss": "hinge", "g_ema_decay": 0.0, "spectral_norm": False}})
  workdir.prepare(str(tmp_path), same, migrations=MIGRATIONS)
  assert (tmp_path / "checkpoints" / "1").exists()
  assert json.loads((tmp_path / "config.json").read_text())["fill_remainder"] == "none"


@pytest.mark.parametrize("changed", [
    dict(seed=0, generators={"cgan": {"width": 32, "loss": "hinge", "g_ema_decay": 0.999}}),
    dict(seed=0, fill_remainder="class_weight", generators={"cgan": {"width": 32, "loss": "hinge"}}),
    dict(seed=0, generators={"cgan": {"width": 32, "loss": "hinge", "unknown_new_field": 1}}),
])
def test_added_fields_with_other_values_are_differences(tmp_path, changed):
  old = {"seed": 0, "generators": {"cgan": {"width": 32, "loss": "hinge"}}}
  (tmp_path / "config.json").write_text(json.dumps(old))
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "checkpoints" / "1").write_text("x")
  with pytest.raises(workdir.WorkdirConflictError, match="different config"):
    workdir.prepare(str(tmp_path), _config(**changed), migrations=MIGRATIONS)


def test_upgrade_leaves_recorded_values_alone_and_drops_retired_fields():
  old = {"g_ema_decay": 0.5, "nested": {"a": 1, "dataset": "mnist"}, "dataset": "mnist"}
  new = {"g_ema_decay": 0.0, "spectral_norm": True, "nested": {"a": 1, "reuse_fakes": False}, "dataset": "mnist"}
  migrations = workdir.Migrations(added={"spectral_norm": False, "reuse_fakes": False}, retired=("dataset",))
  # A retired field goes where today's config lacks it (nested) and stays where it has it (top level).
  assert workdir.upgrade(old, new, migrations) == {
      "g_ema_decay": 0.5, "spectral_norm": False, "nested": {"a": 1, "reuse_fakes": False}, "dataset": "mnist"}


def test_a_run_recorded_with_data_fields_in_a_generator_section_still_resumes(tmp_path):
  old = {"seed": 0, "generators": {"cgan": {"width": 32, "dataset": "mnist", "imbalance": "deepsmote_100"}}}
  (tmp_path / "config.json").write_text(json.dumps(old))
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / "evaluator.msgpack").write_text("x")
  workdir.prepare(str(tmp_path), _config(seed=0, generators={"cgan": {"width": 32}}), outputs=("models",),
                  migrations=validation.MIGRATIONS)
  assert (tmp_path / "models" / "evaluator.msgpack").exists()
