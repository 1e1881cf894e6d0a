"""ProGAN in the shared GAN step and loop: the fade follows the step counter, phases train only their
blocks, the sharded step equals one device, and progan_mnist:smoke resumes exactly inside a fade."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import variants
from gan_jax import metric_writer
from gan_jax import models
from gan_jax import parallel
from gan_jax.models import progan_gan
from gan_jax.train import gan_loop
from gan_jax.train import gan_step
from gan_runs import without_timing

BATCH = 16


def setup(stage=1, fade_start=2, fade_steps=4):
  build = lambda s: models.build_gan("progan", image_shape=(28, 28, 1), num_classes=10, width=4, stage=s)
  gan, last = build(stage), build(None)
  cfg = gan_step.StepConfig(loss="wasserstein", gp_weight=10.0, drift_weight=1e-3, fade_start=fade_start,
                            fade_steps=fade_steps)
  tx = gan_step.make_optimizer(1e-3, 0.0, 0.99)
  state = jax.jit(lambda k: gan_step.init_train_state(last, tx, tx, k, (28, 28, 1)))(jax.random.PRNGKey(0))
  return gan, gan_step.make_train_step(gan, cfg, tx, tx), state


def batch_at(step):
  rng = np.random.default_rng(step)
  return {"image": rng.uniform(-1, 1, (1, BATCH, 28, 28, 1)).astype(np.float32),
          "label": rng.integers(0, 10, (1, BATCH)).astype(np.int32)}


def test_fade_alpha_follows_the_step_counter_without_retracing():
  # The 8x8 block fades in over steps 0-4: the program of the test below (same config, same name).
  gan, step_fn, state = setup(stage=1, fade_start=0)
  traces = []

  def train_step(s, b):
    traces.append(1)
    return step_fn(s, b)

  jitted = jax.jit(train_step)
  alphas = []
  for step in range(6):
    _, metrics = jitted(state.replace(step=jnp.int32(step)), batch_at(step))
    alphas.append(float(metrics["fade_alpha"]))
  assert alphas == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
  assert len(traces) == 1
  # The drift term is 1e-3 * E[D(real)^2], on the reals faded to the step's alpha (here 0.25).
  batch = batch_at(1)
  faded = gan.with_alpha(0.25)
  logits = jax.jit(lambda params, image, label: faded.discriminator.apply(
      {"params": params}, gan.fade_reals(image, 0.25), label)[0])(state.d_params, batch["image"][0], batch["label"][0])
  _, metrics = jitted(state.replace(step=jnp.int32(1)), batch)
  np.testing.assert_allclose(metrics["drift"], 1e-3 * np.mean(np.square(logits)), rtol=1e-4)


def test_a_phase_leaves_the_blocks_of_later_phases_untouched():
  _, step_fn, state = setup(stage=1, fade_start=0)  # the 8x8 block fades in from step 0
  jitted = jax.jit(step_fn)
  trained = state
  for step in range(3):
    trained, metrics = jitted(trained, batch_at(step))
    assert np.isfinite(metrics["d_loss"]) and metrics["nonfinite"] == 0
  for params_key in ("g_params", "d_params"):
    before, after = getattr(state, params_key)["net"], getattr(trained, params_key)["net"]
    later = [k for k in before if k.startswith(("b16", "b32"))]
    current = [k for k in before if k.startswith("b8")]
    assert later and current
    for k in later:
      chex.assert_trees_all_equal(before[k], after[k])
    for k in current:
      assert not all(np.array_equal(b, a) for b, a in zip(jax.tree.leaves(before[k]), jax.tree.leaves(after[k])))


def test_sharded_fading_step_matches_one_device():
  _, step_fn, state = setup(stage=2, fade_start=0, fade_steps=4)

  def run(mesh):
    jitted = parallel.data_parallel_jit(step_fn, mesh, batch_axis=1)
    s = parallel.replicate(jax.device_get(state), mesh)
    history = []
    for i in range(2):
      s, metrics = jitted(s, parallel.shard_batch(batch_at(i), mesh, batch_axis=1))
      history.append(jax.device_get(metrics))
    return jax.device_get(s), history

  single_state, single_hist = run(parallel.make_mesh(jax.devices()[:1]))
  sharded_state, sharded_hist = run(parallel.make_mesh())
  assert jax.device_count() > 1
  chex.assert_trees_all_close(single_hist, sharded_hist, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(single_state, sharded_state, rtol=1e-4, atol=5e-5)


def test_progan_smoke_grows_through_every_phase_and_resumes_exactly_inside_a_fade(tmp_path, idx_dir):
  config = lambda **o: variants.load("progan_mnist", "smoke", log_every=1, **o)
  schedule = gan_loop.phase_schedule(config(), (28, 28, 1))
  assert schedule == progan_gan.PhaseSchedule(num_stages=4, stable_steps=2, fade_steps=2)
  straight = tmp_path / "straight"
  gan_loop.train_gan(config(), str(straight), idx_dir=str(idx_dir))
  records = metric_writer.read_metrics(str(straight))
  # Phases start at steps 2, 6 and 10, each with a 2-step fade (alpha of the state's step before the update).
  alphas = [r["fade_alpha"] for r in records]
  assert alphas[:12] == [1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
  assert all(a == 1.0 for a in alphas[12:])
  assert all(np.isfinite(r["d_loss"]) and r["drift"] >= 0 for r in records)
  grid = Image.open(straight / "samples" / "step_00000024.png")
  assert grid.size[1] == 10 * (28 + 2) + 2  # one row per class

  resumed = tmp_path / "resumed"
  gan_loop.train_gan(config(num_steps=7), str(resumed), idx_dir=str(idx_dir))  # stops inside phase 2's fade
  gan_loop.train_gan(config(), str(resumed), idx_dir=str(idx_dir))
  assert without_timing(metric_writer.read_metrics(str(resumed))) == without_timing(records)


def test_a_generator_stopped_in_an_early_phase_draws_at_that_resolution(tmp_path, idx_dir):
  config = variants.load("progan_mnist", "smoke", num_steps=5)  # phase 1 (8x8), fade done
  gan_loop.train_gan(config, str(tmp_path), idx_dir=str(idx_dir))
  sample = gan_loop.load_generator(config, str(tmp_path), image_shape=(28, 28, 1), num_classes=10)
  images = sample(jax.random.PRNGKey(0), np.arange(10))
  assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8
  # 8x8 pixels up-sampled to 32x32 and cropped by 2: rows 2-5, 6-9, ... repeat their first row.
  blocks = images[:, 2:26].reshape(10, 6, 4, 28, 1)
  np.testing.assert_array_equal(blocks, np.repeat(blocks[:, :, :1], 4, axis=2))
  assert images.std() > 0


def test_bad_progan_values_are_clear_errors(tmp_path):
  for field, value, message in [("fade_kimg", 0.0, "fade_kimg must be positive"),
                                ("stable_kimg", -1.0, "stable_kimg must be positive"),
                                ("drift_weight", -0.1, "drift_weight must be non-negative")]:
    with pytest.raises(ValueError, match=message):
      gan_loop.train_gan(variants.load("progan_mnist", "smoke", **{field: value}), str(tmp_path), idx_dir=None)
