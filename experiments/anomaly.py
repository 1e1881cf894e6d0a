r"""One-class anomaly detection by reconstruction: AE, VAE and adversarially trained AE scorers.

  python -m experiments.anomaly --config=experiments/configs/anomaly.py:smoke --workdir=/tmp/anomaly \
      [--config.dataset=fashion_mnist] [--config.classes=0,3] [--config.scorers=ae,vae]

For each normal class: train on that class of the train split, score every test
image (the class is normal, the other nine anomalous), report the AUROC per class
and scorer in results.json and results.md, with score_histogram.png and
extremes.png for --config.figure_class. Every (class, scorer) stage is cached in
--workdir/stages: a rerun skips finished stages and resumes an interrupted one.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import common
from gan_jax.train import anomaly_loop
from gan_jax.train import vae_loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Anomaly config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created; finished stages are reused).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Discard an earlier run with a different config in --workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  common.setup_runtime()
  common.run_cleanly(
      lambda: anomaly_loop.run_one_class(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                         overwrite=_OVERWRITE.value),
      failures=(vae_loop.NonFiniteError,))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
