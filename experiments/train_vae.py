r"""Trains an autoencoder, VAE or conditional VAE and reports its test-set figures.

  python -m experiments.train_vae --config=experiments/configs/vae_mnist.py:smoke --workdir=/tmp/vae \
      [--config.latent_dim=2] [--config.likelihood=gaussian] [--config.binarize=True]

Configs: ae_mnist.py, vae_mnist.py, cvae_mnist.py (--config.model=aae for the
adversarially trained autoencoder). Writes results.json (test_neg_elbo_nats for
(C)VAEs, test_recon_mse for all), reconstructions.png, samples.png,
latent_traversal.png and, with latent_dim=2, latent_scatter.png and manifold.png.
A rerun with the same --workdir resumes from its latest checkpoint; SIGTERM/SIGINT
checkpoint the current step and exit 0.
"""
from experiments import common
from gan_jax.train import vae_loop

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "Autoencoder config file (path[:variant]).", "Run folder (created; resumed if it holds checkpoints).")


if __name__ == "__main__":
  common.run(lambda: vae_loop.train_vae(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                        overwrite=_OVERWRITE.value))
