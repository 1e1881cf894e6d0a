r"""Writes images of a trained generator, without training.

  python -m experiments.sample --workdir=runs/cgan --num_per_class=500 --out=generated \
      [--classes=7,8,9] [--truncation=1.5] [--format=npz] [--filter_run=runs/imbalance_mnist]

--workdir is a train_gan run (any GAN family), a train_vae run of a vae or cvae, or
<benchmark>/generators/<name> of an imbalance benchmark run; its latest checkpoint is used.
PNGs go to --out/<class name>/<index>.png (an image folder: --config.dataset=folder:--out
reads it back); --format=npz writes one .npz (image, label, class_names) to --out instead.
--filter_run keeps only images that the confidence filter of that imbalance benchmark run
accepts (at its filter_confidence, or --filter_confidence).
"""
from absl import flags

from experiments import common

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder of a trained generator.")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs, or the .npz path with --format=npz.")
_NUM = flags.DEFINE_integer("num_per_class", 100, "Images per class.")
_CLASSES = flags.DEFINE_string("classes", "", "Classes to draw, e.g. 7,8,9 ('' = every class of the generator).")
_TRUNCATION = flags.DEFINE_float("truncation", 0.0, "> 0 draws latents from N(0, 1) truncated to [-t, t].")
_FORMAT = flags.DEFINE_string("format", "png", "png (an image folder) or npz.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws.")
_FILTER_RUN = flags.DEFINE_string("filter_run", "", "An imbalance benchmark run whose filter classifier to apply.")
_FILTER_CONFIDENCE = flags.DEFINE_float("filter_confidence", -1.0, "Filter threshold (< 0: the run's own).")
flags.mark_flags_as_required(["workdir", "out"])


def main():
  from gan_jax import fs  # pylint: disable=g-import-not-at-top
  from gan_jax import sampling  # pylint: disable=g-import-not-at-top
  if _FORMAT.value not in sampling.FORMATS:
    raise ValueError(f"Unknown --format={_FORMAT.value}; choose one of: {', '.join(sampling.FORMATS)}")
  if _NUM.value <= 0 or _TRUNCATION.value < 0:
    raise ValueError(f"--num_per_class must be positive and --truncation non-negative, got {_NUM.value} and "
                     f"{_TRUNCATION.value}")
  fs.check_usable(_WORKDIR.value, write=False)
  fs.check_usable(fs.dirname(_OUT.value) if _FORMAT.value == "npz" else _OUT.value, write=True)
  generator = sampling.load(_WORKDIR.value)
  classes = sampling.parse_classes(_CLASSES.value, generator)
  confidence, threshold, rounds = None, 0.0, None
  if _FILTER_RUN.value:
    confidence, threshold, rounds = sampling.benchmark_filter(_FILTER_RUN.value, generator)
    if _FILTER_CONFIDENCE.value >= 0:
      threshold = _FILTER_CONFIDENCE.value
  summary = sampling.export(generator, _OUT.value, num_per_class=_NUM.value, classes=classes, seed=_SEED.value,
                            truncation=_TRUNCATION.value, fmt=_FORMAT.value, confidence=confidence,
                            threshold=threshold, max_rounds=rounds)
  print(f"wrote {sum(summary['written'].values())} images of {generator.model} to {_OUT.value}: "
        + ", ".join(f"{name} {n}" for name, n in summary["written"].items()))


if __name__ == "__main__":
  common.run(main)
