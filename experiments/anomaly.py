r"""One-class anomaly detection by reconstruction: AE, VAE and adversarially trained AE scorers.

  python -m experiments.anomaly --config=experiments/configs/anomaly.py:smoke --workdir=/tmp/anomaly \
      [--config.dataset=fashion_mnist] [--config.classes=0,3] [--config.scorers=ae,vae]

For each normal class: train on that class of the train split, score every test
image (the class is normal, the other nine anomalous), report the AUROC per class
and scorer in results.json and results.md, with score_histogram.png and
extremes.png for --config.figure_class. Every (class, scorer) stage is cached in
--workdir/stages: a rerun skips finished stages and resumes an interrupted one.
"""
from experiments import common
from gan_jax.protocols.anomaly import protocol

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "Anomaly config file (path[:variant]).", "Run folder (created; finished stages are reused).")


if __name__ == "__main__":
  common.run(lambda: protocol.run_one_class(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                              overwrite=_OVERWRITE.value, provenance=common.provenance()))
