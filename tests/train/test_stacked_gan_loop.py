"""Per-class GANs trained as one vmapped program equal their one-by-one runs, resume, and load as fit_gan's."""
import jax
import numpy as np
import pytest

from experiments.configs import gan_common
from gan_jax import checkpoint
from gan_jax import fs
from gan_jax.data import idx
from gan_jax.train import gan_loop
from gan_jax.train import stacked_gan_loop

# End-to-end runs: their assertions do not depend on the device count (see conftest.mesh_devices).
MESH_DEVICES = 2

CLASSES = (3, 7, 9)
SIZES = (40, 24, 24)  # the first member repeats its class within fewer batches than the others


def section(**overrides):
  config = gan_common.apply_variant(gan_common.training_config("dcgan"), "smoke")
  config.update({"batch_size": 8, "num_steps": 6, "log_every": 3, "checkpoint_every": 3, "sample_every": 3,
                 **overrides})
  return config


@pytest.fixture(scope="module")
def classes(idx_dir):
  images, labels = idx.load_idx_split(idx_dir, "mnist", "train")
  return [(images[labels == c][:n], labels[labels == c][:n]) for c, n in zip(CLASSES, SIZES)]


def restore(config, workdir):
  gan = gan_loop.build_gan(config, (28, 28, 1), 10)
  g_tx, d_tx = gan_loop.build_optimizers(config)
  template = jax.jit(gan_loop.init_state_fn(config, gan, g_tx, d_tx, (28, 28, 1)))(jax.random.PRNGKey(0))
  ckpt = checkpoint.Checkpointer(fs.join(workdir, "checkpoints"), async_save=False)
  try:
    return jax.device_get(ckpt.restore(template))
  finally:
    ckpt.close()


def stacked_run(config, classes, root):
  members = [stacked_gan_loop.Member(x, y, str(root / f"class{c}")) for (x, y), c in zip(classes, CLASSES)]
  return stacked_gan_loop.fit_gans_stacked(config, members, str(root / "group"), num_classes=10, seed=5,
                                           name="stacked")


@pytest.fixture(scope="module")
def both_ways(classes, tmp_path_factory):
  root = tmp_path_factory.mktemp("gans")
  config = section()
  sequential = [gan_loop.fit_gan(config, x, y, str(root / "sequential" / f"class{c}"), num_classes=10, seed=5)
                for (x, y), c in zip(classes, CLASSES)]
  stacked = stacked_run(config, classes, root / "stacked")
  return config, root, sequential, stacked


def test_each_member_ends_where_its_own_run_ends(both_ways):
  config, root, sequential, stacked = both_ways
  states = [restore(config, str(root / way / f"class{c}")) for way in ("sequential", "stacked") for c in CLASSES]
  alone, together = states[:len(CLASSES)], states[len(CLASSES):]
  for a, b in zip(alone, together):
    assert int(b.step) == config.num_steps
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a.g_params, b.g_params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a.d_params, b.d_params)
  # The members differ from each other: each read its own class.
  assert not np.allclose(jax.tree.leaves(together[0].g_params)[0], jax.tree.leaves(together[1].g_params)[0])
  for one, many in zip(sequential, stacked):
    assert many["step"] == one["step"] == config.num_steps
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
      np.testing.assert_allclose(many[key], one[key], rtol=1e-3, atol=1e-4, err_msg=key)


def test_members_get_what_fit_gan_leaves_and_load_as_its_runs(both_ways):
  config, root, _, stacked = both_ways
  for c, record in zip(CLASSES, stacked):
    folder = root / "stacked" / f"class{c}"
    assert (folder / "config.json").exists() and (folder / "samples" / "step_00000006.png").exists()
    assert stacked_gan_loop.finished_record(str(folder), config.num_steps) == record
    assert stacked_gan_loop.finished_record(str(folder), config.num_steps + 1) is None
    key, labels = jax.random.PRNGKey(1), np.zeros(5, np.int32)
    drawn = [gan_loop.load_generator(config, str(root / way / f"class{c}"), image_shape=(28, 28, 1),
                                     num_classes=10)(key, labels) for way in ("sequential", "stacked")]
    assert np.mean(np.abs(drawn[0].astype(int) - drawn[1].astype(int)) <= 1) > 0.99
  assert sorted(p.name for p in (root / "stacked" / "group" / "checkpoints").iterdir()) == ["3", "6"]


def test_a_longer_rerun_resumes_the_group_exactly(classes, both_ways, tmp_path):
  config, root, _, _ = both_ways
  straight = stacked_run(section(num_steps=9), classes, tmp_path / "straight")
  longer = stacked_run(section(num_steps=9), classes, root / "stacked")  # resumes the 6-step group
  for a, b in zip(straight, longer):
    assert a["step"] == b["step"] == 9
    assert {k: a[k] for k in ("d_loss", "g_loss")} == {k: b[k] for k in ("d_loss", "g_loss")}


def test_unstackable_groups_are_refused(classes, tmp_path):
  with pytest.raises(ValueError, match="at least one member"):
    stacked_gan_loop.fit_gans_stacked(section(), [], str(tmp_path), num_classes=10, seed=0, name="x")
  (x, y), small = classes[0], np.zeros((8, 32, 32, 1), np.uint8)
  members = [stacked_gan_loop.Member(x, y, str(tmp_path / "a")), stacked_gan_loop.Member(small, y[:8], str(tmp_path))]
  with pytest.raises(ValueError, match="one image shape"):
    stacked_gan_loop.fit_gans_stacked(section(), members, str(tmp_path / "g"), num_classes=10, seed=0, name="x")


def test_a_group_resumed_at_its_end_writes_each_members_own_metrics(classes, tmp_path):
  # A call stopped after the group's last checkpoint but before the member folders were written: the
  # rerun runs no step and takes each member's own metrics from the group folder.
  config = section()
  first = stacked_run(config, classes, tmp_path)
  for c in CLASSES:
    fs.remove(fs.join(str(tmp_path / f"class{c}"), stacked_gan_loop.FINAL_METRICS))
  again = stacked_run(config, classes, tmp_path)
  assert again == first and first[0]["d_loss"] != first[1]["d_loss"]
  assert [stacked_gan_loop.finished_record(str(tmp_path / f"class{c}"), 6) for c in CLASSES] == first
