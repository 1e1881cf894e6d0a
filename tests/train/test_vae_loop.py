"""The train_vae wrapper end to end on the :smoke configs, and exact resume of `fit`."""
import json

import numpy as np
import pytest
from PIL import Image

from gan_jax import data
from experiments.configs import variants
from gan_jax import metric_writer
from gan_jax import parallel
from gan_jax.train import vae_loop


TIMING_KEYS = {"images_per_sec"}


def smoke_config(name, **overrides):
  return variants.load(name, "smoke", **overrides)


@pytest.fixture(scope="module", params=["vae_mnist", "ae_mnist", "cvae_mnist"])
def smoke_run(request, tmp_path_factory, idx_dir):
  """One smoke run per config, shared by the tests of this module."""
  workdir = tmp_path_factory.mktemp(request.param)
  config = smoke_config(request.param)
  results = vae_loop.train_vae(config, str(workdir), idx_dir=str(idx_dir))
  return config, workdir, results


def image_rows(path, side=28, pad=2):
  height = Image.open(path).size[1]
  assert (height - pad) % (side + pad) == 0, height
  return (height - pad) // (side + pad)


def test_smoke_run_lowers_the_loss(smoke_run):
  config, workdir, _ = smoke_run
  records = metric_writer.read_metrics(str(workdir))
  assert [r["step"] for r in records] == list(range(config.log_every, config.num_steps + 1, config.log_every))
  assert all(np.isfinite(r["loss"]) for r in records)
  assert records[-1]["loss"] < records[0]["loss"]


def test_smoke_run_reports_test_figures(smoke_run):
  config, workdir, results = smoke_run
  with open(workdir / "results.json") as f:
    assert json.load(f) == results
  assert 0 < results["test_recon_mse"] < 1
  assert results["num_test_examples"] == config.eval_examples
  if config.model in ("vae", "cvae"):
    assert np.isfinite(results["test_neg_elbo_nats"])
    # The negative ELBO is the reconstruction NLL plus the KL, both in nats per image.
    assert results["test_neg_elbo_nats"] == pytest.approx(results["test_recon_nats"] + results["test_kl_nats"],
                                                          rel=1e-5)
    assert results["test_kl_nats"] >= 0
  else:
    assert "test_neg_elbo_nats" not in results
  if config.iwae_samples:
    assert results["test_iwae_nll_nats"] <= results["test_neg_elbo_nats"] + 1.0


def test_smoke_run_writes_figures(smoke_run):
  config, workdir, _ = smoke_run
  assert image_rows(workdir / "reconstructions.png") == 2
  assert Image.open(workdir / "reconstructions.png").size[0] == 2 + 10 * 30
  assert image_rows(workdir / "samples.png") == (10 if config.model == "cvae" else 8)
  assert image_rows(workdir / "latent_traversal.png") == config.latent_dim
  two_d = config.latent_dim == 2
  assert (workdir / "latent_scatter.png").exists() == two_d
  assert (workdir / "manifold.png").exists() == two_d
  if two_d:
    assert image_rows(workdir / "manifold.png") == 15
    assert (workdir / "latent_scatter.png").stat().st_size > 5000


def test_rerun_resumes_exactly(tmp_path, idx_dir):
  """A run stopped at step 15 and resumed logs what an uninterrupted run logs (same batches, same noise)."""
  config = smoke_config("vae_mnist")
  programs = vae_loop.build_programs(config, parallel.make_mesh(), model="vae", image_shape=(28, 28, 1),
                                     num_classes=10)
  images, labels = data.load_arrays("mnist", "train", idx_dir=str(idx_dir))
  dataset = data.InMemoryDataset(data.scale_images(images[:2000], (0.0, 1.0)), labels[:2000])
  fit = lambda cfg, workdir: vae_loop.fit(cfg, programs, dataset, str(workdir), seed=cfg.seed)

  straight = tmp_path / "straight"
  fit(config, straight)
  resumed = tmp_path / "resumed"
  fit(smoke_config("vae_mnist", num_steps=15), resumed)
  assert [r["step"] for r in metric_writer.read_metrics(str(resumed))] == [5, 10, 15]
  result = fit(config, resumed)

  def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]

  assert without_timing(metric_writer.read_metrics(str(resumed))) == without_timing(
      metric_writer.read_metrics(str(straight)))
  assert int(result.state.step) == config.num_steps
  # Finished: a further call restores the last checkpoint and trains nothing.
  again = fit(config, resumed)
  assert int(again.state.step) == config.num_steps
  assert len(metric_writer.read_metrics(str(resumed))) == 6


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match="Unknown model 'dcgan'"):
    vae_loop.validate_config(smoke_config("vae_mnist", model="dcgan"))
  with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
    vae_loop.validate_config(smoke_config("vae_mnist", likelihood="poisson"))
  with pytest.raises(ValueError, match="batch_size"):
    vae_loop.validate_config(smoke_config("ae_mnist", batch_size=0))


def test_trained_vaes_sample_by_class_and_the_autoencoder_refuses(smoke_run, tmp_path):
  from gan_jax import sampling  # pylint: disable=g-import-not-at-top
  config, workdir, _ = smoke_run
  if config.model == "ae":
    with pytest.raises(sampling.SampleError, match="'ae' run, which cannot generate images"):
      sampling.load(str(workdir))
    return
  generator = sampling.load(str(workdir))
  assert generator.conditional == (config.model == "cvae") and generator.image_shape == (28, 28, 1)
  classes = sampling.parse_classes("2,5" if generator.conditional else "", generator)
  out = str(tmp_path / "samples.npz")
  summary = sampling.export(generator, out, num_per_class=4, classes=classes, fmt="npz", truncation=1.0)
  arrays = np.load(out)
  assert arrays["image"].shape == (4 * max(1, len(classes)), 28, 28, 1) and arrays["image"].dtype == np.uint8
  assert sum(summary["written"].values()) == len(arrays["label"])
  assert list(arrays["class_names"]) == [str(d) for d in range(10)]
