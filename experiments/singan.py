r"""Trains SinGAN on one image, or the A <-> B structural analogy of two images.

  python -m experiments.singan --config=experiments/configs/singan.py[:smoke|:cpu] --workdir=DIR \
      [--config.image=PATH|skimage:NAME] [--config.image_b=PATH]

A rerun with the same --workdir restores the finished scales and trains the rest;
SIGTERM/SIGINT save the current scale between chunks and exit 0. A bad image path
or config prints one line and exits 2.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import common
from gan_jax.singan import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "SinGAN config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created; resumed if it holds finished scales).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard an earlier run with a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  common.setup_runtime()
  common.run_cleanly(lambda: train.train(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value),
                     failures=(FloatingPointError,))


if __name__ == "__main__":
  app.run(main)
