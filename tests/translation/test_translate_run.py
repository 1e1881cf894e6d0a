"""experiments.translate end to end: the :smoke configs learn (test L1 below the identity map's), write their
reports, resume exactly, reuse finished stages, and refuse bad input in one line."""
import json
import os
import shutil
import pathlib
import subprocess
import sys

import chex
import jax
import pytest

from experiments.configs import variants
from gan_jax import checkpoint
from gan_jax.translation import data as data_lib
from gan_jax.translation import train

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices);
# the sharding tests use all 8 devices.
MESH_DEVICES = 2


ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory, idx_dir):
  workdir = str(tmp_path_factory.mktemp("pix2pix"))
  config = variants.load("pix2pix_edges2digits", "smoke")
  return workdir, config, train.run_translation(config, workdir, idx_dir=str(idx_dir))


@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory, idx_dir):
  workdir = str(tmp_path_factory.mktemp("cyclegan"))
  config = variants.load("cyclegan_thin2thick", "smoke")
  return workdir, config, train.run_translation(config, workdir, idx_dir=str(idx_dir))


def test_pix2pix_smoke_beats_the_identity_map(pix2pix_run):
  workdir, _, results = pix2pix_run
  model, identity = results["models"]["pix2pix"], results["identity"]
  assert model["l1"] < identity["l1"], (model, identity)
  assert model["ssim"] > identity["ssim"]
  on_disk = json.load(open(f"{workdir}/results.json"))
  assert on_disk["models"]["pix2pix"]["l1"] == model["l1"]
  assert "| pix2pix |" in open(f"{workdir}/results.md").read()
  for name in ("translations.png", "stages/pix2pix/metrics.jsonl", "stages/pix2pix/translations.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_cyclegan_smoke_beats_the_identity_map_and_trains_the_paired_bound(cyclegan_run):
  _, _, results = cyclegan_run
  identity = results["identity"]
  assert results["models"]["cyclegan"]["l1"] < identity["l1"], results["models"]
  assert set(results["models"]) == {"cyclegan", train.UPPER_BOUND}
  assert results["models"][train.UPPER_BOUND]["l1"] < identity["l1"]
  assert "g_cycle" in results["models"]["cyclegan"]["final_train"]


def test_a_rerun_reuses_the_finished_stages(pix2pix_run, idx_dir):
  workdir, config, first = pix2pix_run
  again = train.run_translation(config, workdir, idx_dir=str(idx_dir))  # the data are read again, nothing trains
  assert again["stages_cached"] == ["pix2pix"] and again["stages_computed"] == []
  assert again["models"] == first["models"]


def test_an_interrupted_run_resumes_exactly(cyclegan_run, tmp_path, idx_dir):
  # The smoke run checkpointed steps 100 and 150; a copy without 150 is a run stopped after step 100.
  workdir, config, _ = cyclegan_run
  folder = tmp_path / "cut"
  shutil.copytree(os.path.join(workdir, "stages", "cyclegan"), folder)
  shutil.rmtree(folder / "checkpoints" / str(config.num_steps))
  task = data_lib.load(config, str(idx_dir))
  translator = train.build_translator(config, "cyclegan", task.side, task.channels)
  resumed = train.fit(config, translator, train.objective_for(config, "cyclegan"), task.train_a, task.train_b,
                      str(folder), seed=config.seed, name="cyclegan", preview=(task.test_a[:2], None))
  assert resumed.start == 100
  whole = checkpoint.Checkpointer(os.path.join(workdir, "stages", "cyclegan", "checkpoints"), async_save=False)
  expected = whole.restore(resumed.state, step=config.num_steps)
  whole.close()
  chex.assert_trees_all_equal(jax.device_get(resumed.state), jax.device_get(expected))
  assert int(expected.pools["a"].count) == config.pool_size  # the pool was full and swapping before the cut


@pytest.mark.parametrize("flag,message", [
    ("--config.data=edges2dogs", "Unknown data 'edges2dogs'; choose one of: edges2digits, thin2thick"),
    ("--config.patch_size=50", "Unknown patch_size 50; choose one of: 16, 34, 70"),
    ("--config.method=pix2pix", "thin2thick is unpaired; pix2pix needs pairs"),
])
def test_bad_input_is_one_line_before_training(tmp_path, flag, message):
  command = [sys.executable, "-m", "experiments.translate", "--config=experiments/configs/cyclegan_thin2thick.py:smoke",
             f"--workdir={tmp_path / 'run'}", flag]
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 {os.environ['GAN_JAX_TEST_COMPILE_FLAGS']}"}
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr
  lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and message in lines[0], done.stderr
  assert "Traceback" not in done.stderr
  assert not (tmp_path / "run" / "stages").exists()


def test_horse2zebra_smoke_config_runs_on_tfds_mock_data(tmp_path):
  # TFDS's cycle_gan cannot be downloaded here: its mock data (random RGB images) stand in, and the
  # networks are cut further so that only the config's data path, jitter, mirror and RGB shapes are paid for.
  tfds = pytest.importorskip("tensorflow_datasets")
  config = variants.load("cyclegan_horse2zebra", "smoke", num_steps=2, decay_steps=1, width_g=4, width_d=4,
                         num_blocks=1, log_every=1, checkpoint_every=2, sample_every=2, train_examples=8,
                         test_examples=8)
  assert (config.image_size, config.channels, config.jitter, config.flip) == (32, 3, True, True)
  with tfds.testing.mock_data(num_examples=8):
    results = train.run_translation(config, str(tmp_path))
  assert results["data"] == "tfds:cycle_gan/horse2zebra" and not results["test_paired"]
  assert results["identity"] is None and "l1" not in results["models"]["cyclegan"]
  assert results["models"]["cyclegan"]["final_train"]["step"] == 2
  assert "no true translations" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "translations.png").stat().st_size > 0
