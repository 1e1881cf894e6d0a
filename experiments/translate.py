r"""Image-to-image translation: pix2pix (paired) or CycleGAN (unpaired), then the test error against the truth.

  python -m experiments.translate --config=experiments/configs/pix2pix_edges2digits.py:cpu --workdir=runs/p2p
  python -m experiments.translate --config=experiments/configs/cyclegan_thin2thick.py:cpu --workdir=runs/cyc \
      [--config.dataset=fashion_mnist] [--config.data=folder:/data/maps]

Writes <workdir>/stages/<model>/ (checkpoints, metrics.jsonl, TensorBoard, sample grids),
results.json, results.md and translations.png. A rerun with the same --workdir
resumes; SIGTERM/SIGINT checkpoint the current step and exit 0.
"""
from experiments import common
from gan_jax.translation import train

_CONFIG, _WORKDIR, _OVERWRITE = common.define_run_flags(
    "Translation config file (path[:variant]).", "Run folder (created; finished stages are reused).")


if __name__ == "__main__":
  common.run(lambda: train.run_translation(_CONFIG.value, _WORKDIR.value, idx_dir=common.idx_dir(),
                                           overwrite=_OVERWRITE.value, provenance=common.provenance()))
