"""The stage runner: one plan, one marker per stage, atomic payloads, fingerprints, stops between stages."""
import os
import signal

import numpy as np
import pytest

from gan_jax import fs
from gan_jax import preemption
from gan_jax import stages


def _plan(tmp_path, calls, fingerprint=None):
  def stage(name, payload):
    def run():
      calls.append(name)
      return payload
    return run

  return [
      stages.Stage("first", str(tmp_path / "a" / "first.json"), stage("first", {"value": 1}), work=1.0),
      stages.Stage("params", str(tmp_path / "b" / "params.msgpack"),
                   stage("params", {"w": np.arange(3.0, dtype=np.float32)}), work=3.0),
      stages.Stage("arrays", str(tmp_path / "c" / "arrays.npz"), stage("arrays", {"x": np.ones((2, 2))}),
                   fingerprint=fingerprint, folder=str(tmp_path / "c")),
  ]


def test_runs_each_stage_once_and_reloads_its_payload(tmp_path):
  calls = []
  runner = stages.Runner(_plan(tmp_path, calls))
  assert runner.run() and calls == ["first", "params", "arrays"] and runner.computed == calls
  assert stages.load_payload(str(tmp_path / "a" / "first.json")) == {"value": 1}
  params = stages.load_payload(str(tmp_path / "b" / "params.msgpack"), {"w": np.zeros(3, np.float32)})
  np.testing.assert_array_equal(params["w"], [0.0, 1.0, 2.0])
  again = stages.Runner(_plan(tmp_path, calls))
  assert again.run() and calls == ["first", "params", "arrays"] and again.cached == ["first", "params", "arrays"]
  # A lost marker redoes exactly that stage.
  os.remove(tmp_path / "b" / "params.msgpack")
  stages.Runner(_plan(tmp_path, calls)).run()
  assert calls[3:] == ["params"]


def test_a_stale_fingerprint_redoes_the_stage_and_clears_its_folder(tmp_path):
  calls = []
  plan = [_plan(tmp_path, calls, fingerprint={"steps": 10})[0],
          stages.Stage("owned", str(tmp_path / "owned" / "result.json"), lambda: calls.append("owned") or {"a": 1},
                       fingerprint={"steps": 10}, folder=str(tmp_path / "owned"))]
  stages.Runner(plan).run()
  (tmp_path / "owned" / "checkpoint").write_text("from the 10-step run")
  assert fs.read_json(str(tmp_path / "owned" / "result.json"))["fingerprint"] == {"steps": 10}
  changed = [plan[0], stages.Stage("owned", plan[1].marker, plan[1].run, fingerprint={"steps": 20},
                                   folder=plan[1].folder)]
  runner = stages.Runner(changed)
  runner.run()
  assert runner.computed == ["owned"] and runner.cached == ["first"]
  assert not (tmp_path / "owned" / "checkpoint").exists()


def test_a_signal_stops_between_stages_and_a_rerun_finishes(tmp_path):
  calls = []
  plan = _plan(tmp_path, calls)
  first = plan[0]
  plan[0] = stages.Stage(first.name, first.marker, lambda: (os.kill(os.getpid(), signal.SIGTERM), first.run())[1])
  with preemption.StopSignal() as stop:
    assert not stages.Runner(plan).run(stop)
  assert calls == ["first"] and stop.received == "SIGTERM"
  assert stages.Runner(_plan(tmp_path, calls)).run() and calls == ["first", "params", "arrays"]


def test_a_stage_that_stops_inside_is_not_marked_done(tmp_path):
  def stopped():
    raise stages.StageStopped("Stopped by SIGTERM while training")

  plan = [stages.Stage("train", str(tmp_path / "done.json"), stopped)]
  assert not stages.Runner(plan).run()
  assert not (tmp_path / "done.json").exists()


def test_cached_stages_resume_and_names_must_be_unique(tmp_path):
  resumed = []
  plan = [stages.Stage("scale 0", str(tmp_path / "s0.json"), lambda: {"n": 0}, resume=lambda: resumed.append(0))]
  stages.Runner(plan).run()
  assert resumed == []
  stages.Runner(plan).run()
  assert resumed == [0]
  with pytest.raises(ValueError, match="stage names repeat"):
    stages.Runner(plan + plan)
  with pytest.raises(ValueError, match="must end in"):
    stages.save_payload(str(tmp_path / "x.txt"), {})


def _timed(name, work, seconds):
  return stages.Stage(name, f"/nonexistent/{name}.json", lambda: {}, work=work), seconds


def test_the_eta_weighs_each_kind_of_stage_at_its_own_rate():
  eta = stages._Eta()  # pylint: disable=protected-access
  for stage, seconds in (_timed("generator a", 20_000, 600.0), _timed("synthetic a", None, 3_000.0),
                         _timed("classifier x 0", 1_000, 40.0)):
    eta.add(stage, seconds)
  left = [stages.Stage("classifier y 0", "m", lambda: {}, work=1_000),   # 40 s at the classifiers' rate
          stages.Stage("synthetic b", "m", lambda: {}, work=None),      # 3,000 s: the mean of its kind
          stages.Stage("generator b", "m", lambda: {}, work=10_000),    # 300 s
          stages.Stage("quality b", "m", lambda: {}, work=1_000)]       # unseen: (600 + 40) / 21,000 per unit
  seconds, unknown = eta.remaining(left)
  assert unknown == 0
  assert seconds == pytest.approx(40.0 + 3_000.0 + 300.0 + 1_000 * 640.0 / 21_000)


def test_stages_nothing_can_estimate_are_counted_not_guessed():
  eta = stages._Eta()  # pylint: disable=protected-access
  left = [stages.Stage("synthetic a", "m", lambda: {}, work=None), stages.Stage("classifier", "m", lambda: {})]
  assert eta.remaining(left) == (0.0, 2)
  eta.add(*_timed("synthetic b", None, 50.0))
  assert eta.remaining(left) == (50.0, 1)


def test_the_eta_line_ignores_cached_stages(tmp_path, caplog):
  plan = [stages.Stage(f"classifier {i}", str(tmp_path / f"{i}.json"), lambda: {}, work=100) for i in range(3)]
  stages.save_payload(plan[0].marker, {})
  with caplog.at_level("INFO"):
    stages.Runner(plan).run()
  lines = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
  assert len(lines) == 2 and lines[-1].endswith("| ETA 0:00:00")
  assert "not yet estimable" not in lines[0]


def test_a_named_kind_keeps_its_own_rate_apart_from_stages_sharing_its_first_word():
  eta = stages._Eta()  # pylint: disable=protected-access
  eta.add(stages.Stage("quality real", "m", lambda: {}, kind="quality floor"), 100.0)  # work 1: its own unit
  eta.add(stages.Stage("quality a", "m", lambda: {}, work=1_000), 10.0)
  seconds, unknown = eta.remaining([stages.Stage("quality b", "m", lambda: {}, work=1_000)])
  assert (seconds, unknown) == (pytest.approx(10.0), 0)  # not (100 + 10) / 1,001 per unit
  assert stages.Stage("quality b", "m", lambda: {}).kind == "quality"


def test_cleanup_runs_after_the_marker_is_written_and_again_for_a_finished_stage(tmp_path):
  marker, seen = str(tmp_path / "done.json"), []
  stage = stages.Stage("draw", marker, lambda: {}, cleanup=lambda: seen.append(os.path.exists(marker)))
  stages.Runner([stage]).run()
  assert seen == [True]  # never before the marker: a process that dies between them loses nothing
  stages.Runner([stage]).run()
  assert seen == [True, True]
  stages.Runner([stage], writer=False).run()
  assert seen == [True, True]  # only the writing process removes files
