r"""Trains SinGAN on one image, or the A <-> B structural analogy of two images.

  python -m experiments.singan --config=experiments/configs/singan.py[:smoke|:cpu] --workdir=DIR \
      [--config.image=PATH|skimage:NAME] [--config.image_b=PATH]

A rerun with the same --workdir restores the finished scales and trains the rest;
SIGTERM/SIGINT save the current scale between chunks and exit 0. A bad image path
or config prints one line and exits 2.
"""
from experiments import common
from gan_jax.singan import train

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "SinGAN config file (path[:variant]).", "Run folder (created; resumed if it holds finished scales).")


if __name__ == "__main__":
  common.run(lambda: train.train(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value))
