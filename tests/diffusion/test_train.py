"""Latent diffusion end to end on its :smoke config: outputs, sampling, exact resume of both stages, bad input."""
import json
import os

import chex
import jax
import numpy as np
import pytest
from PIL import Image

from experiments.configs import ldm_mnist
from gan_jax.diffusion import driver
from gan_jax.diffusion import train


@pytest.fixture(scope="module")
def smoke(idx_dir, tmp_path_factory):
  """The :smoke run with the first stage's patch discriminator on from step 3 of 6 (one run covers both paths)."""
  config = ldm_mnist.get_config("smoke")
  config.ae_disc_weight = 0.5
  workdir = str(tmp_path_factory.mktemp("ldm"))
  return config, workdir, driver.train_diffusion(config, workdir, idx_dir=str(idx_dir))


def test_outputs_of_both_stages_and_the_figures(smoke):
  config, workdir, results = smoke
  assert json.load(open(os.path.join(workdir, "results.json"))) == json.loads(json.dumps(results))
  assert results["final"]["step"] == config.num_steps and np.isfinite(results["final"]["loss"])
  assert results["final"]["latent_scale"] > 0
  for name in ("reconstructions.png", "trajectory.png", "loss_curves.png", "samples_guidance_0.png",
               "samples_guidance_1.png", "samples_guidance_3.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  # A grid per guidance scale: one row per class, 8 columns of 28 px with 2 px padding.
  assert Image.open(os.path.join(workdir, "samples_guidance_3.png")).size == (8 * 30 + 2, 10 * 30 + 2)
  lines = open(os.path.join(workdir, "first_stage", "metrics.jsonl")).read().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [3, 6]


def test_the_discriminator_starts_at_its_step_and_its_checkpoint_holds_the_trained_critic(smoke):
  config, workdir, _ = smoke
  records = [json.loads(l) for l in open(os.path.join(workdir, "first_stage", "metrics.jsonl"))]
  assert records[0]["d_loss"] == 0.0 and records[1]["d_loss"] > 0 and records[1]["disc_weight"] > 0
  # The checkpoint holds the critic as trained (a rerun resumes both players), not as initialised.
  programs = train.build(config, (28, 28, 1), 10)
  template = jax.jit(lambda: train._first_stage_init(programs, config.seed))()  # pylint: disable=protected-access
  restored = train._restore(template, os.path.join(workdir, "first_stage"))  # pylint: disable=protected-access
  assert int(restored.step) == 6
  assert not np.allclose(restored.critic_params["logits"]["kernel"], template.critic_params["logits"]["kernel"])


def test_sampler_gives_uint8_images_and_guidance_changes_them(smoke):
  config, workdir, _ = smoke
  sample = train.load_sampler(config, workdir, image_shape=(28, 28, 1), num_classes=10)
  key, labels = jax.random.PRNGKey(0), np.array([0, 9, 9])
  a, again = sample(key, labels, guidance=3.0), sample(key, labels, guidance=3.0)
  chex.assert_shape(a, (3, 28, 28, 1))
  assert a.dtype == np.uint8
  np.testing.assert_array_equal(a, again)  # DDIM with eta 0 and a fixed key: deterministic
  assert not np.array_equal(a, sample(key, labels, guidance=0.0))


def test_the_sampler_draws_in_chunks_of_the_configured_size(smoke):
  config, workdir, _ = smoke
  sample = train.load_sampler(config, workdir, image_shape=(28, 28, 1), num_classes=10)
  key, labels = jax.random.PRNGKey(2), np.full(5, 4)
  by_config = sample(key, labels)
  np.testing.assert_array_equal(by_config, sample(key, labels, batch_size=config.sample_batch_size))
  halves = sample(key, labels, batch_size=3)  # two chunks with their own noise: another draw
  assert halves.shape == by_config.shape and not np.array_equal(halves, by_config)


def _fit(config, workdir, idx_dir):
  images, labels = driver.gan_loop.load_train_arrays(config, str(idx_dir))
  return train.fit_diffusion(config, images, labels, str(workdir), num_classes=10, seed=config.seed)


def _samples(config, workdir, seed):
  """One image per class from a finished run (DDIM with eta 0: a pure function of the weights and key)."""
  sample = train.load_sampler(config, str(workdir), image_shape=(28, 28, 1), num_classes=10)
  return sample(jax.random.PRNGKey(seed), np.arange(10))


def test_a_run_stopped_halfway_resumes_to_the_same_model(smoke, idx_dir, tmp_path):
  # Stopped in the denoiser stage (at step 3 of 6): the rerun reuses the first stage and its latent
  # scale and continues the denoiser from its checkpoint, to the samples of the uninterrupted run.
  config, workdir, _ = smoke
  half = config.copy_and_resolve_references()
  half.num_steps = 3
  resumed = tmp_path / "resumed"
  assert _fit(half, resumed, idx_dir)["step"] == 3
  assert _fit(config, resumed, idx_dir)["step"] == 6
  np.testing.assert_array_equal(_samples(config, workdir, 1), _samples(config, resumed, 1))


def test_more_first_stage_steps_retrain_the_denoiser_on_the_new_latents(smoke, idx_dir, tmp_path):
  # A run with a 3-step first stage, rerun with the fixture's 6: the first stage continues from its
  # step-3 checkpoint and the denoiser, trained on the old latents, starts again: the uninterrupted run.
  config, workdir, _ = smoke
  short = config.copy_and_resolve_references()
  short.ae_steps = 3
  extended = tmp_path / "extended"
  _fit(short, extended, idx_dir)
  _fit(config, extended, idx_dir)
  metrics = (extended / "metrics.jsonl").read_text()
  assert [json.loads(l)["step"] for l in metrics.splitlines()] == [3, 6]  # one denoiser run, not two
  whole = _samples(config, workdir, 3)
  np.testing.assert_array_equal(whole, _samples(config, extended, 3))
  # Fewer steps than the first stage reached change nothing: its latents are those the denoiser learned.
  _fit(short, extended, idx_dir)
  assert (extended / "metrics.jsonl").read_text() == metrics
  np.testing.assert_array_equal(whole, _samples(config, extended, 3))


def test_overwrite_discards_both_stages_of_a_run_with_another_config(smoke, tmp_path):
  config, workdir, _ = smoke
  old = tmp_path / "old"
  for name in ("config.json", "metrics.jsonl", "denoiser_latents.json", "first_stage/latent_scale.json"):
    (old / name).parent.mkdir(parents=True, exist_ok=True)
    (old / name).write_bytes(open(os.path.join(workdir, name), "rb").read())
  changed = config.copy_and_resolve_references()
  changed.ae_widths = (8, 8)
  with pytest.raises(ValueError, match="different config.*ae_widths"):
    train.prepare_workdir(str(old), changed, overwrite=False)
  assert (old / "first_stage").exists()
  train.prepare_workdir(str(old), changed, overwrite=True)
  assert sorted(os.listdir(old)) == ["config.json"]  # the old first stage would have been resumed
  assert json.load(open(old / "config.json"))["ae_widths"] == [8, 8]


@pytest.mark.parametrize("field, value, message", [
    ("model", "vqgan", "Unknown model 'vqgan'; choose one of: ldm, ddpm"),
    ("schedule", "sigmoid", "Unknown schedule 'sigmoid'; choose one of: linear, cosine"),
    ("prediction", "x0", "Unknown prediction 'x0'; choose one of: epsilon, v"),
    ("sampler", "euler", "Unknown sampler 'euler'"),
    ("sample_steps", 101, r"sampling steps must lie in \[1, 100\], got 101"),
    ("label_dropout", 1.0, r"label_dropout must lie in \[0, 1\), got 1.0"),
    ("heads", 3, r"config.widths \(16, 32\) must be multiples of config.heads=3"),
    ("batch_size", 12, "batch_size=12 is not divisible by the number of devices"),
    ("sample_batch_size", 0, "sample_batch_size"),
])
def test_bad_fields_are_refused_before_training(field, value, message):
  config = ldm_mnist.get_config("smoke")
  config[field] = value
  with pytest.raises(ValueError, match=message):
    driver.validate_config(config)
