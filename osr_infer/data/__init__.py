"""Data sets as in-memory uint8 arrays (numpy and Pillow only), and the registry of data sets."""

from osr_infer.data.cifar import load_cifar10
from osr_infer.data.datasets import DataError, ImageSet, OpenSetData, default_data_dir, split_train_val
from osr_infer.data.digits import load_digits_open_set
from osr_infer.data.folders import load_class_folder, load_image_folder
from osr_infer.data.idx import IdxFormatError, read_idx
from osr_infer.data.mnist import MnistMissingError, load_mnist
from osr_infer.data.registry import (
    DATASETS,
    describe_dataset,
    load_open_set_data,
    open_set_source,
    parse_reference,
    reference_source,
)

__all__ = [
    "DATASETS",
    "DataError",
    "IdxFormatError",
    "ImageSet",
    "MnistMissingError",
    "OpenSetData",
    "default_data_dir",
    "describe_dataset",
    "load_cifar10",
    "load_class_folder",
    "load_digits_open_set",
    "load_image_folder",
    "load_mnist",
    "load_open_set_data",
    "open_set_source",
    "parse_reference",
    "read_idx",
    "reference_source",
    "split_train_val",
]
