"""One-class anomaly detection: AUROC input checks, the smoke protocol run, and stage caching."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments.configs import anomaly as anomaly_config
from gan_jax import metric_writer
from gan_jax.protocols.anomaly import protocol
from gan_jax.protocols.anomaly import report
from gan_jax.protocols.anomaly import scoring

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices).
MESH_DEVICES = 2


def test_auroc_edge_cases():
  labels = np.array([0, 0, 1, 1])
  assert scoring.auroc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
  assert scoring.auroc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
  assert scoring.auroc(labels, np.ones(4)) == 0.5
  with pytest.raises(ValueError, match="both classes"):
    scoring.auroc(np.ones(3), np.arange(3.0))
  with pytest.raises(ValueError, match="NaN"):
    scoring.auroc(labels, np.array([0.0, np.nan, 1.0, 2.0]))


def test_parse_classes_and_scorers():
  assert protocol.parse_classes("all", 10) == list(range(10))
  assert protocol.parse_classes("0,3", 10) == [0, 3]
  assert protocol.parse_classes((1, 2), 10) == [1, 2]
  assert protocol.parse_classes(4, 10) == [4]
  with pytest.raises(ValueError, match="distinct integers"):
    protocol.parse_classes("3,12", 10)
  assert protocol.parse_scorers("ae, vae") == ["ae", "vae"]
  with pytest.raises(ValueError, match="Unknown scorer"):
    protocol.parse_scorers("ae,svdd")


def test_markdown_table_has_mean_row():
  table = report.markdown_table({"ae": {0: 0.9, 1: 0.7}, "vae": {0: 0.5, 1: 1.0}}, ["ae", "vae"], ["zero", "one"])
  lines = table.strip().splitlines()
  assert lines[0] == "| class | AE | VAE |"
  assert lines[2] == "| 0 (zero) | 0.9000 | 0.5000 |"
  assert lines[-1] == "| **mean** | **0.8000** | **0.7500** |"


def stage_files(workdir):
  stages = workdir / protocol.STAGES_DIR
  return {p: p.stat().st_mtime_ns for stage in sorted(stages.iterdir())
          for p in (stage / protocol.STAGE_RESULT, stage / protocol.STAGE_SCORES)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, idx_dir):
  workdir = tmp_path_factory.mktemp("anomaly")
  config = anomaly_config.get_config("smoke")
  results = protocol.run_one_class(config, str(workdir), idx_dir=str(idx_dir))
  return config, workdir, results


def test_smoke_run_reports_auroc_per_class_and_scorer(smoke_run):
  config, workdir, results = smoke_run
  with open(workdir / "results.json") as f:
    assert json.load(f) == results
  assert results["classes"] == [0, 1] and results["scorers"] == ["ae", "vae", "aae"]
  for scorer in ("ae", "vae", "aae"):
    per_class = results["auroc"][scorer]
    assert set(per_class) == {"0", "1"}
    assert all(0.0 <= v <= 1.0 for v in per_class.values())
    assert results["mean_auroc"][scorer] == pytest.approx(np.mean(list(per_class.values())))
  assert sorted(results["stages_computed"]) == sorted(results["stages"]) and not results["stages_cached"]
  stage = results["stages"]["class1_vae"]
  assert stage["num_test_normal"] + stage["num_test_anomalous"] == config.test_examples
  # The aae stage trained both players.
  records = metric_writer.read_metrics(str(workdir / "stages" / "class0_aae"))
  assert {"d_loss", "d_real", "d_fake", "g_adversarial", "mse"} <= set(records[-1])


def test_smoke_run_writes_table_and_figures(smoke_run):
  config, workdir, _ = smoke_run
  table = (workdir / "results.md").read_text()
  assert "| class | AE | VAE | AAE |" in table and "| **mean** |" in table
  assert (workdir / "score_histogram.png").stat().st_size > 5000
  extremes = Image.open(workdir / "extremes.png")
  assert extremes.size == (2 + config.num_extremes * 30, 2 + 6 * 30)  # 2 rows x 3 scorers


def test_rerun_skips_finished_stages(smoke_run, idx_dir):
  config, workdir, _ = smoke_run
  before = stage_files(workdir)
  assert len(before) == 2 * 6
  results = protocol.run_one_class(config, str(workdir), idx_dir=str(idx_dir))
  assert results["stages_computed"] == [] and len(results["stages_cached"]) == 6
  assert stage_files(workdir) == before  # not one stage file rewritten
  with open(workdir / "results.json") as f:
    assert json.load(f)["stages_cached"] == results["stages_cached"]


def test_rerun_with_another_training_config_is_refused(smoke_run, idx_dir):
  config, workdir, _ = smoke_run
  changed = anomaly_config.get_config("smoke")
  changed.train.num_steps = 40
  with pytest.raises(ValueError, match="different config"):
    protocol.run_one_class(changed, str(workdir), idx_dir=str(idx_dir))
  assert os.path.exists(workdir / "results.json")
