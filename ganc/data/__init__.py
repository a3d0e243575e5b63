"""Datasets (aligned, unaligned, single folder), image I/O and generated demo data."""
from .datasets import (AlignedDataset, SingleFolderDataset, Transform, UnalignedDataset,
                       build_dataset)
from .demo import make_demo_data
from .images import list_images, load_rgb, to_tensor, to_uint8

__all__ = ["AlignedDataset", "UnalignedDataset", "SingleFolderDataset", "Transform",
           "build_dataset", "make_demo_data", "list_images", "load_rgb", "to_tensor", "to_uint8"]
