"""Data sets as in-memory uint8 arrays (numpy and Pillow only), and the registry of data sets.

The names below are imported on first use (PEP 562): ``osr-infer one.png`` never loads the
data-set readers (and their urllib/ssl imports), which would cost about 40 ms of start-up.
"""

from __future__ import annotations

from osr_infer.lazy import lazy_exports

_WHERE = {
    "load_cifar10": "cifar",
    "DataError": "datasets", "ImageSet": "datasets", "OpenSetData": "datasets", "default_data_dir": "datasets",
    "split_train_val": "datasets",
    "load_digits_open_set": "digits",
    "load_class_folder": "folders", "load_image_folder": "folders",
    "IdxFormatError": "idx", "read_idx": "idx",
    "MnistMissingError": "mnist", "load_mnist": "mnist",
    "DATASETS": "registry", "describe_dataset": "registry", "load_open_set_data": "registry", "open_set_source": "registry",
    "parse_reference": "registry", "reference_source": "registry",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
