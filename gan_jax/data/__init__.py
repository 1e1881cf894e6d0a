"""Data sets, class imbalance, the splits of a run and batch order (NumPy only).

Importing this package never imports TensorFlow; TFDS is imported only when a
data set is loaded through it. `device_dataset` (which needs JAX) is imported
explicitly.
"""
from gan_jax.data.idx import IdxFormatError
from gan_jax.data.idx import idx_split_paths
from gan_jax.data.idx import load_idx_split
from gan_jax.data.idx import read_idx
from gan_jax.data.imbalance import PROFILES
from gan_jax.data.imbalance import ImbalanceSpec
from gan_jax.data.imbalance import class_counts
from gan_jax.data.imbalance import make_imbalanced
from gan_jax.data.imbalance import profile_counts
from gan_jax.data.batch_order import InMemoryDataset
from gan_jax.data.batch_order import batch_indices
from gan_jax.data.batch_order import process_slice
from gan_jax.data.batch_order import steps_per_epoch
from gan_jax.data.sources import DATASETS
from gan_jax.data.sources import IDX_DIR_ENV
from gan_jax.data.sources import DataUnavailableError
from gan_jax.data.sources import DatasetInfo
from gan_jax.data.sources import check_output_range
from gan_jax.data.sources import default_idx_dir
from gan_jax.data.sources import get_dataset_info
from gan_jax.data.sources import load_arrays
from gan_jax.data.sources import scale_images
from gan_jax.data.splits import Splits
from gan_jax.data.splits import load_splits
from gan_jax.data.splits import seeded_subset

__all__ = [
    "DATASETS",
    "IDX_DIR_ENV",
    "PROFILES",
    "DataUnavailableError",
    "DatasetInfo",
    "IdxFormatError",
    "ImbalanceSpec",
    "InMemoryDataset",
    "Splits",
    "batch_indices",
    "check_output_range",
    "class_counts",
    "default_idx_dir",
    "get_dataset_info",
    "idx_split_paths",
    "load_arrays",
    "load_idx_split",
    "load_splits",
    "make_imbalanced",
    "process_slice",
    "profile_counts",
    "read_idx",
    "scale_images",
    "seeded_subset",
    "steps_per_epoch",
]
