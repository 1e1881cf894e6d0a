r"""Trains latent diffusion (first stage, then the class-conditioned denoiser) or a pixel-space DDPM.

  python -m experiments.train_diffusion --config=experiments/configs/ldm_mnist.py[:smoke|:cpu] --workdir=DIR \
      [--config.dataset=fashion_mnist] [--config.guidance=3.0]   # also ddpm_mnist.py, ldm_cifar10.py

Writes both stages' checkpoints and metrics, the first stage's reconstructions, one sample
grid per guidance scale (0, 1, 3; a row per class), a denoising trajectory and results.json.
A rerun with the same --workdir resumes; SIGTERM/SIGINT checkpoint the current step and exit 0.
"""
from experiments import common
from gan_jax.diffusion import driver

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "Diffusion config file (path[:variant]).", "Run folder (created; resumed if it holds checkpoints).")


if __name__ == "__main__":
  common.run(lambda: driver.train_diffusion(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                            overwrite=_OVERWRITE.value))
