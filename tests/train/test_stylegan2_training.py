"""StyleGAN2 in the shared GAN step and its configs end to end.

The step tests build their programs from the `stylegan2_mnist:ada_smoke` config (lazy R1, ADA, style
mixing, the generator average), so the 8-device step is the very program the ADA smoke run trains
with: one module, one worker, one compilation of each.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import variants
from gan_jax import ada
from gan_jax import metric_writer
from gan_jax import parallel
from gan_jax.train import gan_loop
from gan_runs import train
from gan_runs import without_timing

IMAGE_SHAPE = (28, 28, 1)


def test_ada_smoke_trains_with_r1_and_ada_and_resumes_exactly(tmp_path, idx_dir):
  config = lambda **o: ada_smoke(checkpoint_every=10, **o)
  straight = tmp_path / "straight"
  train(config(), straight, idx_dir)
  records = metric_writer.read_metrics(str(straight))
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  assert all({"ada_p", "r1_penalty", "d_real_sign"} <= set(r) for r in records)
  assert all(0.0 <= r["ada_p"] <= 1.0 and np.isfinite(r["g_loss"]) for r in records)
  grid = Image.open(straight / "samples" / "step_00000020.png")
  assert grid.size[1] == 10 * (28 + 2) + 2  # one row per class

  resumed = tmp_path / "resumed"
  train(config(num_steps=10), resumed, idx_dir)
  train(config(), resumed, idx_dir)  # the same command with num_steps raised to 20
  assert without_timing(metric_writer.read_metrics(str(resumed))) == without_timing(records)


@pytest.mark.parametrize("name", ["stylegan2_cifar10"])  # MNIST is covered by the ADA run above
def test_plain_smoke_configs_train_without_ada(name, tmp_path, idx_dir):
  config = variants.load(name, "smoke")
  assert config.ada_target == 0 and config.r1_gamma > 0
  train(config, tmp_path, idx_dir)
  records = metric_writer.read_metrics(str(tmp_path))
  assert "ada_p" not in records[-1] and np.isfinite(records[-1]["d_loss"])
  side = 32 if name.endswith("cifar10") else 28
  grid = Image.open(tmp_path / "samples" / "step_00000020.png")
  assert grid.size[1] == 10 * (side + 2) + 2


def test_bad_stylegan2_values_are_clear_errors(tmp_path):
  for field, value, message in [("ada_target", 1.0, "ada_target must lie in"),
                                ("style_mixing_prob", 1.5, "style_mixing_prob must lie in"),
                                ("r1_gamma", -1.0, "r1_gamma"),
                                ("ada_policy", "xflip", "Unknown ADA policy 'xflip'")]:
    with pytest.raises(ValueError, match=message):
      gan_loop.train_gan(variants.load("stylegan2_mnist", "ada_smoke", **{field: value}), str(tmp_path),
                         idx_dir=None)
  with pytest.raises(ValueError, match="Unknown config variant 'ada_cpu'"):
    variants.load("stylegan2_mnist", "ada_cpu")


def ada_smoke(**overrides):
  return variants.load("stylegan2_mnist", "ada_smoke", **overrides)


BATCH = ada_smoke().batch_size


def batch_at(step):
  rng = np.random.default_rng(step)
  return {"image": rng.uniform(-1, 1, (1, BATCH) + IMAGE_SHAPE).astype(np.float32),
          "label": rng.integers(0, 10, (1, BATCH)).astype(np.int32)}


def initial_state(programs, mesh):
  """The config's initial state with the ADA probability at 0.5, so every transformation fires on some images."""
  state = jax.device_get(programs.init(jax.random.PRNGKey(0)))
  return parallel.replicate(state.replace(ada={**state.ada, "p": np.float32(0.5)}), mesh)


def run(mesh, num_steps):
  """(state, metrics) after each of `num_steps` steps of the config's step on `mesh`, from `initial_state`."""
  programs = gan_loop.build_programs(ada_smoke(), IMAGE_SHAPE, 10, mesh)
  state, after = initial_state(programs, mesh), []
  for i in range(num_steps):
    state, metrics = programs.train_step(state, parallel.shard_batch(batch_at(i), mesh, batch_axis=1))
    after.append((jax.device_get(state), jax.device_get(metrics)))
  return after


@pytest.fixture(scope="module")
def one_device_steps():
  return run(parallel.make_mesh(jax.devices()[:1]), 2)


def test_sharded_stylegan2_step_with_r1_ada_and_mixing_matches_one_device(one_device_steps):
  sharded = run(parallel.make_mesh(), 2)
  chex.assert_trees_all_close([m for _, m in one_device_steps], [m for _, m in sharded], rtol=1e-4, atol=1e-5)
  # Adam with beta1 = 0 moves each weight by about lr * sign(g) on the first steps, so a gradient near
  # zero whose float rounding differs between the two reductions may move its weight by a share of lr.
  chex.assert_trees_all_close(one_device_steps[-1][0], sharded[-1][0], rtol=1e-4, atol=5e-4)
  # Lazy R1 every 4 D updates: computed on update 0 (scaled by the interval), skipped on update 1.
  assert one_device_steps[0][1]["r1_penalty"] > 0
  assert one_device_steps[1][1]["r1_penalty"] == 0
  # The running average of w moved away from zero in training mode.
  assert np.abs(one_device_steps[-1][0].g_batch_stats["w_avg"]).max() > 0


def test_ada_probability_moves_after_each_interval_by_the_images_seen(one_device_steps):
  # p moves once per interval of 2 steps, by 2 steps x 16 images / 1,000 (ada_kimg 1), towards
  # more augmentation when r_t = E[sign D(real)] over the interval exceeds the target.
  config = ada_smoke()
  assert (config.ada_interval, config.ada_kimg) == (2, 1)
  (state, first), (end, second) = one_device_steps
  assert float(state.ada["p"]) == 0.5 and float(state.ada["count"]) == BATCH  # mid-interval: tallied only
  assert float(first["ada_p"]) == 0.5
  r_t = (float(first["d_real_sign"]) + float(second["d_real_sign"])) / 2
  assert r_t != config.ada_target
  assert float(end.ada["p"]) == pytest.approx(0.5 + np.sign(r_t - config.ada_target) * 2 * BATCH / 1000, abs=1e-6)
  assert float(end.ada["count"]) == 0 and float(end.ada["sign_sum"]) == 0


def abstract_step(config):
  """The shapes of the config's state and of its step's outputs, traced without compiling."""
  programs = gan_loop.build_programs(config, IMAGE_SHAPE, 10, parallel.make_mesh(jax.devices()[:1]))
  state = jax.eval_shape(programs.init, jax.random.PRNGKey(0))
  return state, programs.train_step


def test_ada_state_is_required_when_ada_is_on():
  state, step = abstract_step(ada_smoke())
  assert state.ada is not None
  with pytest.raises(ValueError, match="ada_state=True"):
    jax.eval_shape(step, state.replace(ada=None), batch_at(0))


def test_without_r1_and_ada_the_step_has_neither_metric():
  state, step = abstract_step(ada_smoke(r1_gamma=0.0, ada_target=0.0))
  _, metrics = jax.eval_shape(step, state, batch_at(0))
  assert {"g_loss", "d_loss"} <= set(metrics)
  assert not {"r1_penalty", "ada_p", "d_real_sign"} & set(metrics)
  assert state.ada is None


def test_adapt_tallies_until_the_interval_then_resets():
  state = ada.initial_state()
  state = ada.adapt(state, jnp.float32(1.0), 10, jnp.int32(0), target=0.6, interval=3, adjust_images=100)
  state = ada.adapt(state, jnp.float32(0.0), 10, jnp.int32(1), target=0.6, interval=3, adjust_images=100)
  assert float(state["p"]) == 0 and float(state["sign_sum"]) == 10 and float(state["count"]) == 20
  state = ada.adapt(state, jnp.float32(1.0), 10, jnp.int32(2), target=0.6, interval=3, adjust_images=100)
  # r_t = 20 / 30 > 0.6: p rises by 30 / 100.
  assert float(state["p"]) == pytest.approx(0.3) and float(state["count"]) == 0
