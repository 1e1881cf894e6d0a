"""Data sets, class imbalance and batch order; importing this package never imports TensorFlow.

The tf.data pipelines live in `gan_jax.data.tfds_pipeline`, which callers import
explicitly because it needs TensorFlow.
"""
from gan_jax.data.idx import IdxFormatError
from gan_jax.data.idx import idx_split_paths
from gan_jax.data.idx import load_idx_split
from gan_jax.data.idx import read_idx
from gan_jax.data.imbalance import PROFILES
from gan_jax.data.imbalance import class_counts
from gan_jax.data.imbalance import make_imbalanced
from gan_jax.data.imbalance import profile_counts
from gan_jax.data.sampler import InMemoryDataset
from gan_jax.data.sampler import batch_indices
from gan_jax.data.sampler import process_slice
from gan_jax.data.sampler import steps_per_epoch
from gan_jax.data.sources import DATASETS
from gan_jax.data.sources import IDX_DIR_ENV
from gan_jax.data.sources import DataUnavailableError
from gan_jax.data.sources import DatasetInfo
from gan_jax.data.sources import check_output_range
from gan_jax.data.sources import default_idx_dir
from gan_jax.data.sources import get_dataset_info
from gan_jax.data.sources import load_arrays
from gan_jax.data.sources import scale_images

__all__ = [
    "DATASETS",
    "IDX_DIR_ENV",
    "PROFILES",
    "DataUnavailableError",
    "DatasetInfo",
    "IdxFormatError",
    "InMemoryDataset",
    "batch_indices",
    "check_output_range",
    "class_counts",
    "default_idx_dir",
    "get_dataset_info",
    "idx_split_paths",
    "load_arrays",
    "load_idx_split",
    "make_imbalanced",
    "process_slice",
    "profile_counts",
    "read_idx",
    "scale_images",
    "steps_per_epoch",
]
