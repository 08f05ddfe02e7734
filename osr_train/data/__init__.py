"""Data sets as in-memory uint8 arrays (numpy only: the edge side reuses these readers)."""

from osr_train.data.cifar import load_cifar10
from osr_train.data.datasets import (
    DataError,
    ImageSet,
    OpenSetData,
    default_data_dir,
    load_open_set_data,
)
from osr_train.data.digits import load_digits_open_set
from osr_train.data.folders import load_image_folder
from osr_train.data.idx import IdxFormatError, read_idx
from osr_train.data.mnist import MnistMissingError, load_mnist

__all__ = [
    "DataError",
    "IdxFormatError",
    "ImageSet",
    "MnistMissingError",
    "OpenSetData",
    "default_data_dir",
    "load_cifar10",
    "load_digits_open_set",
    "load_image_folder",
    "load_mnist",
    "load_open_set_data",
    "read_idx",
]
