"""Datasets as numpy arrays, per-class index tables and deterministic per-row subsets.

:mod:`~mixscale.data.datasets` loads a dataset (digits, torchvision's, IDX files, image
folders; torchvision and PIL only inside the loaders that need them), and
:mod:`~mixscale.data.subsets` draws a row's images.
"""

from __future__ import annotations

from mixscale.data.datasets import ImageDataset, design_dataset, load_dataset, sanitize_class_name
from mixscale.data.subsets import (
    EVAL_IMAGES_AUTO,
    EVAL_SEED,
    eval_subset,
    sample_subset,
    subset_hash,
)

__all__ = [
    "ImageDataset",
    "design_dataset",
    "load_dataset",
    "sanitize_class_name",
    "EVAL_SEED",
    "eval_subset",
    "EVAL_IMAGES_AUTO",
    "sample_subset",
    "subset_hash",
]
