r"""Trains a GAN.

  python -m experiments.train_gan --config=experiments/configs/dcgan_mnist.py:smoke \
      --workdir=/tmp/dcgan [--config.dataset=fashion_mnist] [--config.num_steps=2000]

A rerun with the same --workdir resumes from its latest checkpoint; SIGTERM/SIGINT
checkpoint the current step and exit 0.
"""
from experiments import common
from gan_jax.train import gan_loop

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "GAN config file (path[:variant]).", "Run folder (created; resumed if it holds checkpoints).")


if __name__ == "__main__":
  common.run(lambda: gan_loop.train_gan(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                        overwrite=_OVERWRITE.value))
