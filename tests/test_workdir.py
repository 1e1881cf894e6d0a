"""Run folders: config comparison across gan_jax versions, atomic JSON."""
import json

import ml_collections
import pytest

from gan_jax import workdir


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
  workdir.prepare(str(tmp_path), same)
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
    workdir.prepare(str(tmp_path), _config(**changed))


def test_backfill_leaves_recorded_values_alone():
  old = {"g_ema_decay": 0.5, "nested": {"a": 1}}
  new = {"g_ema_decay": 0.0, "spectral_norm": True, "nested": {"a": 1, "reuse_fakes": False}}
  assert workdir.backfill_added_fields(old, new) == {
      "g_ema_decay": 0.5, "spectral_norm": False, "nested": {"a": 1, "reuse_fakes": False}}
