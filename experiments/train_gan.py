r"""Trains a GAN.

  python -m experiments.train_gan --config=experiments/configs/dcgan_mnist.py:smoke \
      --workdir=/tmp/dcgan [--config.dataset=fashion_mnist] [--config.num_steps=2000]

A rerun with the same --workdir resumes from its latest checkpoint; SIGTERM/SIGINT
checkpoint the current step and exit 0.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import common
from gan_jax.train import gan_loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "GAN config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created; resumed if it holds checkpoints).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard an earlier run with a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  common.setup_runtime()
  common.run_cleanly(
      lambda: gan_loop.train_gan(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(), overwrite=_OVERWRITE.value),
      failures=(gan_loop.NonFiniteError,))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
