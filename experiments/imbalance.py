r"""The imbalance benchmark: does generative oversampling help a classifier on imbalanced data?

  python -m experiments.imbalance --config=experiments/configs/imbalance.py:cpu --workdir=/tmp/imbalance \
      [--config.dataset=fashion_mnist] [--config.profile=deepsmote_100] [--config.methods=none,smote,cgan] \
      [--config.num_seeds=5] [--classifier_seeds=auto|stacked|sequential] \
      [--class_generators=auto|stacked|sequential]

Makes the train split imbalanced, builds each method's training set (classic
remedies and generated images), trains the same CNN with several seeds per
method, and writes results.json/csv/md and the figures. Every stage is cached in
--workdir: a rerun skips finished stages and resumes an interrupted one.
"""
from absl import flags

from experiments import common
from gan_jax.protocols.imbalance import pipeline

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "Imbalance benchmark config file (path[:variant]).", "Run folder (created; finished stages are reused).")

_CACHE = flags.DEFINE_string(
    "compilation_cache", None, "Folder of the persistent XLA compilation cache (default: <workdir>/xla_cache; "
    "'' disables). The per-class DCGANs share their compiled programs through it.")
_CLASSIFIER_SEEDS = flags.DEFINE_enum(
    "classifier_seeds", "auto", pipeline.CLASSIFIER_SEEDS, "How each method's seeds train: 'stacked' as one "
    "vmapped program, 'sequential' one by one, 'auto' stacked on GPUs/TPUs and sequential on CPUs (faster there).")

_CLASS_GENERATORS = flags.DEFINE_enum(
    "class_generators", "auto", pipeline.CLASS_GENERATORS, "How the per-class generators (dcgan) of one batch "
    "size train: 'stacked' as one vmapped program, 'sequential' one by one, 'auto' stacked on GPUs/TPUs and "
    "sequential on CPUs (faster there).")


def main():
  common.enable_compilation_cache(common.default_cache(_WORKDIR.value) if _CACHE.value is None else _CACHE.value)
  return pipeline.run_benchmark(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(), overwrite=_OVERWRITE.value,
                                provenance=common.provenance(), classifier_seeds=_CLASSIFIER_SEEDS.value,
                                class_generators=_CLASS_GENERATORS.value)


if __name__ == "__main__":
  common.run(main)
