"""The data set registry: every data set the toolkit can learn from, one entry each.

A data set reference is ``NAME`` or ``NAME:ARGUMENT`` (``mnist``, ``digits``,
``folder:PATH``, ``idx:PATH``). Everything that needs images of a model's data set goes
through here: training's splits, evaluation's unknowns, osr-export's probe and INT8
calibration images, and osr-infer's labelled references (``mnist:test``, ``digits``,
``folder:PATH``...). Adding a data set is one `DatasetEntry` in `DATASETS`.

``--known-classes`` trains on a subset of a data set's classes: the splits keep only those
(relabelled ``0..k-1`` in the order given), and the test images of the other classes become
the first unknown test set, as in the standard open-set protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet, OpenSetData, default_data_dir, split_train_val
from osr_infer.preprocess import PREPROCESSING, PreprocessContract, find_images
from osr_infer.spec import UNKNOWN, DatasetSpec

#: Images decoded when a folder's default input shape is inferred.
SHAPE_SAMPLE = 32
#: Default input side for folders of images that are not all the same square size.
DEFAULT_FOLDER_SIZE = 32


@dataclass
class UnknownSet:
    """A test set of unknowns, decoded only when (and as much as) it is needed."""

    name: str
    size: int | None  # number of images, when known without decoding
    loader: Callable[[PreprocessContract, np.ndarray | None], ImageSet]  # (contract, indices or None for all)

    def load(self, contract: PreprocessContract, n: int | None = None, seed: int = 0) -> ImageSet:
        """All images, or a seeded sample of ``n`` of them (sorted, decoded alone)."""
        index = None
        if n is not None and self.size is not None and n < self.size:
            index = np.sort(np.random.default_rng(seed).choice(self.size, size=n, replace=False))
        images = self.loader(contract, index)
        images.labels = np.full(len(images), UNKNOWN, dtype=np.int64)
        return images


@dataclass
class Reference:
    """What an osr-infer data set reference yields: labelled (or unknown) images, or files to decode.

    ``class_names`` names the labels; ``None`` means every image is an unknown.
    """

    name: str
    labels: np.ndarray
    class_names: tuple[str, ...] | None
    images: np.ndarray | None = None
    paths: list[str] | None = None


@dataclass
class DatasetEntry:
    """One data set: how to find its classes, shape and splits, and its default unknowns."""

    name: str
    summary: str
    example: str
    needs_argument: bool = False

    def class_names(self, arg: str, data_dir: Path) -> tuple[str, ...]:
        raise NotImplementedError

    def default_shape(self, arg: str, data_dir: Path) -> tuple[int, int]:
        """``(size, channels)`` of the network input when the user does not choose: the toolkit's default contract."""
        return PREPROCESSING.size, PREPROCESSING.channels

    def splits(self, arg: str, data_dir: Path, contract: PreprocessContract, dataset: DatasetSpec, *, download: bool,
               progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
        """``(train, val, test)``, labelled with the data set's own classes, through ``contract``."""
        raise NotImplementedError

    def unknowns(self, arg: str, data_dir: Path, dataset: DatasetSpec) -> list[UnknownSet]:
        """The unknown test sets evaluated by default (besides held-out classes)."""
        return []

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        """osr-infer's ``NAME[:ARG]`` reference: by default the test split, labelled."""
        _, _, test = self.splits(arg, data_dir, contract, DatasetSpec(self.name, split_seed), download=False, progress=False)
        return Reference(f"{self.name}:{arg}" if arg else self.name, test.labels, test.class_names, images=test.images, paths=None)


# -- entries ----------------------------------------------------------------------------------


def _cifar_unknowns(data_dir: Path) -> list[UnknownSet]:
    """CIFAR-10's test images under ``data_dir`` (the seed's unknowns), if they are there."""
    from osr_infer.data.cifar import find_cifar10, read_cifar_batch

    found = find_cifar10(data_dir)
    if found is None:
        return []
    if (found / "test_batch").is_file():
        rgb, _ = read_cifar_batch(found / "test_batch")  # one pickle: reading it is the only way to count it

        def from_pickle(contract: PreprocessContract, index: np.ndarray | None) -> ImageSet:
            chosen = rgb if index is None else rgb[index]
            return ImageSet(contract.conform(chosen), np.full(len(chosen), UNKNOWN, dtype=np.int64), "cifar10-test")

        return [UnknownSet("cifar10-test", len(rgb), from_pickle)]
    return [_folder_unknowns(found, "cifar10-test")]


def _folder_unknowns(folder: Path, name: str | None = None) -> UnknownSet:
    """A folder of images (recursive) as unknowns; only the sampled files are decoded."""
    from osr_infer.data.folders import decode_paths

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    paths = find_images(folder)
    if not paths:
        raise DataError(f"no image files under {folder}")
    set_name = name or folder.name

    def load(contract: PreprocessContract, index: np.ndarray | None) -> ImageSet:
        chosen = paths if index is None else [paths[i] for i in index]
        return decode_paths(chosen, set_name, contract, progress=index is None and len(chosen) > 2000)

    return UnknownSet(set_name, len(paths), load)


class MnistEntry(DatasetEntry):
    def class_names(self, arg: str, data_dir: Path) -> tuple[str, ...]:
        from osr_infer.data.mnist import MNIST_CLASSES

        return MNIST_CLASSES

    def splits(self, arg: str, data_dir: Path, contract: PreprocessContract, dataset: DatasetSpec, *, download: bool,
               progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
        from osr_infer.data.mnist import load_mnist

        train, val = split_train_val(load_mnist(data_dir, "train", download=download), dataset.n_val, dataset.split_seed)
        test = load_mnist(data_dir, "test")
        return train.conformed(contract), val.conformed(contract), test.conformed(contract)

    def unknowns(self, arg: str, data_dir: Path, dataset: DatasetSpec) -> list[UnknownSet]:
        return _cifar_unknowns(data_dir)

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        from osr_infer.data.mnist import MnistMissingError, load_mnist, mnist_raw_dir

        split = arg or "test"
        if split not in ("train", "test"):
            raise DataError(f"mnist:{arg}: the MNIST splits are mnist:train and mnist:test")
        try:
            images = load_mnist(data_dir, split).conformed(contract)
        except MnistMissingError:
            raise DataError(
                f"mnist:{split}: MNIST not found in {mnist_raw_dir(data_dir)} (set `data_dir` or $OSR_DATA_DIR; "
                "osr-train's `download` fetches it)"
            ) from None
        return Reference(f"mnist:{split}", images.labels, images.class_names, images=images.images)


class DigitsEntry(DatasetEntry):
    def class_names(self, arg: str, data_dir: Path) -> tuple[str, ...]:
        from osr_infer.data.digits import DIGIT_CLASSES

        return DIGIT_CLASSES

    def splits(self, arg: str, data_dir: Path, contract: PreprocessContract, dataset: DatasetSpec, *, download: bool,
               progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
        from osr_infer.data.digits import load_digits_open_set

        data = load_digits_open_set(seed=dataset.split_seed, contract=contract)
        return data.train, data.val, data.test

    def unknowns(self, arg: str, data_dir: Path, dataset: DatasetSpec) -> list[UnknownSet]:
        from osr_infer.data.digits import sample_photo_crops

        def load(contract: PreprocessContract, index: np.ndarray | None) -> ImageSet:
            crops = sample_photo_crops(500, dataset.split_seed, contract)
            return crops if index is None else crops.subset(index)

        return [UnknownSet("sample-photos", 500, load)]

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        """The test split of the model's own seed plus the photo crops: what osr-train reports on."""
        from osr_infer.data.digits import load_digits_open_set

        data = load_digits_open_set(seed=split_seed, contract=contract)
        photos = data.unknown_test[0]
        images = np.concatenate([data.test.images, photos.images])
        labels = np.concatenate([data.test.labels, np.full(len(photos), UNKNOWN)])
        return Reference("digits", labels, data.class_names, images=images)


class IdxEntry(DatasetEntry):
    """IDX files in MNIST's layout in a folder (Fashion-MNIST, KMNIST, EMNIST...);
    class names from ``classes.txt`` (one per line, in label order) when present."""

    def _files(self, arg: str, split: str) -> tuple[Path, Path]:
        from osr_infer.data.idx import find_idx_split

        folder = Path(arg)
        if not folder.is_dir():
            raise DataError(f"idx:{arg}: no such folder")
        images, labels = find_idx_split(folder, split)
        if images is None or labels is None:
            stem = "train" if split == "train" else "t10k"
            raise DataError(f"idx:{arg}: no {stem}-images-idx3-ubyte / {stem}-labels-idx1-ubyte (optionally .gz) in {folder}")
        return images, labels

    def _read(self, arg: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        from osr_infer.data.idx import read_idx_pair

        return read_idx_pair(*self._files(arg, split))

    def _label_values(self, arg: str) -> np.ndarray:
        from osr_infer.data.idx import read_idx

        return np.unique(read_idx(self._files(arg, "train")[1], expected_ndim=1))

    def class_names(self, arg: str, data_dir: Path) -> tuple[str, ...]:
        values = self._label_values(arg)
        names_file = Path(arg) / "classes.txt"
        if names_file.is_file():
            names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip())
            if len(names) != int(values.max()) + 1 or values.min() < 0:
                raise DataError(f"{names_file}: {len(names)} names, but the labels run {int(values.min())}..{int(values.max())}")
            return names
        return tuple(str(int(v)) for v in range(int(values.max()) + 1))

    def default_shape(self, arg: str, data_dir: Path) -> tuple[int, int]:
        from osr_infer.data.idx import read_idx

        shape = read_idx(self._files(arg, "test")[0]).shape
        return max(shape[1], shape[2]), 3 if len(shape) == 4 else 1

    def _set(self, arg: str, split: str, contract: PreprocessContract) -> ImageSet:
        images, labels = self._read(arg, split)
        names = self.class_names(arg, Path())
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise DataError(f"idx:{arg}: {split} labels outside 0..{len(names) - 1}")
        return ImageSet(images, labels, f"{Path(arg).name}-{split}", class_names=names).conformed(contract)

    def splits(self, arg: str, data_dir: Path, contract: PreprocessContract, dataset: DatasetSpec, *, download: bool,
               progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
        train, val = split_train_val(self._set(arg, "train", contract), dataset.n_val, dataset.split_seed)
        return train, val, self._set(arg, "test", contract)

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        test = self._set(arg, "test", contract)
        return Reference(f"idx:{arg}", test.labels, test.class_names, images=test.images)


class FolderEntry(DatasetEntry):
    """An image folder with one subfolder per class (torchvision's ImageFolder layout), or
    ``train/`` and ``test/`` folders in that layout. A single folder is split: a seeded
    sixth for test, then validation from the rest."""

    @staticmethod
    def _roots(arg: str) -> tuple[Path, Path | None]:
        folder = Path(arg)
        if not folder.is_dir():
            raise DataError(f"folder:{arg}: no such folder")
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder / "train", folder / "test"
        return folder, None

    def class_names(self, arg: str, data_dir: Path) -> tuple[str, ...]:
        from osr_infer.data.folders import class_folders

        names = tuple(class_folders(self._roots(arg)[0]))
        if len(names) < 2:
            raise DataError(f"folder:{arg}: needs at least two class subfolders, found {list(names)}")
        return names

    def default_shape(self, arg: str, data_dir: Path) -> tuple[int, int]:
        """Colour if any sampled image is in colour; their side if all are the same square, else 32."""
        from PIL import Image

        paths = find_images(self._roots(arg)[0])
        if not paths:
            raise DataError(f"folder:{arg}: no image files")
        step = max(1, len(paths) // SHAPE_SAMPLE)
        sizes, colour = set(), False
        for path in paths[::step][:SHAPE_SAMPLE]:
            try:
                with Image.open(path) as img:
                    sizes.add(img.size)
                    if not colour and img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                        rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
                        colour = bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())
            except OSError:
                continue
        side = next(iter(sizes))[0] if len(sizes) == 1 and len({*next(iter(sizes))}) == 1 else DEFAULT_FOLDER_SIZE
        return min(max(side, 8), 256), 3 if colour else 1

    def splits(self, arg: str, data_dir: Path, contract: PreprocessContract, dataset: DatasetSpec, *, download: bool,
               progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
        from osr_infer.data.folders import load_class_folder

        train_root, test_root = self._roots(arg)
        names = self.class_names(arg, data_dir)
        pool = load_class_folder(train_root, name=Path(arg).name, contract=contract, class_names=names, progress=progress)
        if test_root is not None:
            test = load_class_folder(test_root, name=f"{Path(arg).name}-test", contract=contract, class_names=names, progress=progress)
        else:
            rest, test = split_train_val(pool, max(1, len(pool) // 6), dataset.split_seed + 1)
            test.name, pool = f"{Path(arg).name}-test", rest
        train, val = split_train_val(pool, dataset.n_val, dataset.split_seed)
        return train, val, test

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        """Every image of a class-per-subfolder folder, labelled by its subfolder (decoded later)."""
        from osr_infer.data.folders import class_folders, subfolder_of

        folder = Path(arg)
        names = tuple(class_folders(folder))
        paths = find_images(folder)
        if not paths:
            raise DataError(f"folder:{arg}: no image files")
        tops = [subfolder_of(folder, p) for p in paths]
        labels = np.array([names.index(t) if t in names else UNKNOWN for t in tops], dtype=np.int64)
        return Reference(f"folder:{arg}", labels, names, paths=paths)


class Cifar10Entry(DatasetEntry):
    """CIFAR-10's test set, as unknowns only (osr-infer's ``cifar10:test``)."""

    def reference(self, arg: str, data_dir: Path, contract: PreprocessContract, split_seed: int) -> Reference:
        from osr_infer.data.cifar import JPEG_DIR, PICKLE_DIR, find_cifar10, load_cifar10

        if arg not in ("", "test"):
            raise DataError(f"cifar10:{arg}: only cifar10:test is read (as unknowns)")
        found = find_cifar10(data_dir)
        if found is None:
            raise DataError(
                f"no CIFAR-10 test set in {data_dir} (expected {PICKLE_DIR}/test_batch or {JPEG_DIR}/<class>/*.jpg; "
                "set `data_dir` or $OSR_DATA_DIR)"
            )
        if (found / "test_batch").is_file():
            images = load_cifar10(found, "test", contract)
            return Reference("cifar10:test", np.full(len(images), UNKNOWN), None, images=images.images)
        paths = find_images(found)
        if not paths:
            raise DataError(f"no image files under {found}")
        return Reference("cifar10:test", np.full(len(paths), UNKNOWN), None, paths=paths)


#: Every data set, by the name its references start with.
DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        MnistEntry("mnist", "MNIST in torchvision's layout under --data-dir (IDX files); unknowns: CIFAR-10 test when present", "mnist"),
        DigitsEntry("digits", "scikit-learn's bundled 8x8 digits (offline); unknowns: crops of its sample photos", "digits"),
        FolderEntry("folder", "an image folder with one subfolder per class (or train/ and test/ in that layout), grey or RGB",
                    "folder:path/to/images", needs_argument=True),
        IdxEntry("idx", "IDX files in MNIST's layout in a folder (Fashion-MNIST, KMNIST, EMNIST); names from classes.txt",
                 "idx:path/to/fashion", needs_argument=True),
    )
}
#: Data sets osr-infer reads as labelled references but that cannot be trained on.
REFERENCE_ONLY: dict[str, DatasetEntry] = {"cifar10": Cifar10Entry("cifar10", "CIFAR-10 test images, every one an unknown", "cifar10:test")}


def parse_reference(reference: str, registry: dict[str, DatasetEntry] = DATASETS) -> tuple[DatasetEntry, str]:
    """``"folder:imgs"`` -> (the folder entry, ``"imgs"``), with a clear error for anything else."""
    name, _, arg = str(reference).partition(":")
    entry = registry.get(name)
    if entry is None:
        known = ", ".join(e.example for e in registry.values())
        raise DataError(f"unknown data set {reference!r}; known: {known}")
    if entry.needs_argument and not arg:
        raise DataError(f"data set {name} needs a path: {entry.example}")
    if arg and not entry.needs_argument and registry is DATASETS:
        raise DataError(f"data set {name} takes no argument (got {reference!r})")
    return entry, arg


def canonical_reference(reference: str) -> str:
    """Paths in references made absolute, so a model trained in one folder is found from another."""
    entry, arg = parse_reference(reference)
    return f"{entry.name}:{Path(arg).resolve()}" if entry.needs_argument else entry.name


def parse_known_classes(text: str | None, all_classes: tuple[str, ...]) -> tuple[int, ...] | None:
    """``"2,4,5"`` (indices or class names) -> indices into ``all_classes``, in the order given."""
    if text is None or not str(text).strip():
        return None
    picked: list[int] = []
    for token in (t.strip() for t in str(text).split(",")):
        if token in all_classes:
            picked.append(all_classes.index(token))
        elif token.lstrip("-").isdigit() and 0 <= int(token) < len(all_classes):
            picked.append(int(token))
        else:
            raise DataError(f"`known_classes`: {token!r} is neither a class name nor an index of {list(all_classes)}")
    if len(set(picked)) != len(picked):
        raise DataError(f"`known_classes`: a class is listed twice in {text!r}")
    if len(picked) < 2:
        raise DataError("`known_classes` needs at least two classes")
    if len(picked) == len(all_classes):
        return None  # every class: the plain data set
    return tuple(picked)


def describe_dataset(reference: str, data_dir: Path | None, *, known_classes: str | None = None, split_seed: int = 0,
                     n_val: int = 10_000, input_size: int | None = None, channels: int | None = None
                     ) -> tuple[DatasetSpec, PreprocessContract]:
    """The spec's data set record and the preprocessing contract for a new training run,
    with defaults from the data (the one place where they are chosen)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    entry, arg = parse_reference(reference)
    all_classes = entry.class_names(arg, data_dir)
    dataset = DatasetSpec(canonical_reference(reference), split_seed, n_val, all_classes, parse_known_classes(known_classes, all_classes))
    if input_size is None or channels is None:
        size, chans = entry.default_shape(arg, data_dir)
        input_size, channels = input_size or size, channels or chans
    try:
        contract = PreprocessContract.for_shape(input_size, channels)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return dataset, contract


def _keep_known(images: ImageSet, known: tuple[int, ...], names: tuple[str, ...]) -> tuple[ImageSet, ImageSet]:
    """(images of the known classes relabelled 0..k-1, images of every other class)."""
    relabel = np.full(max(int(images.labels.max(initial=0)), max(known)) + 1, UNKNOWN, dtype=np.int64)
    relabel[list(known)] = np.arange(len(known))
    mapped = relabel[images.labels]
    inside = np.flatnonzero(mapped != UNKNOWN)
    kept = images.subset(inside)
    kept.labels, kept.class_names = mapped[inside], names
    return kept, images.subset(np.flatnonzero(mapped == UNKNOWN))


@dataclass
class OpenSetSource:
    """A model's data set, ready to load: the known splits and the lazy unknown test sets."""

    dataset: DatasetSpec
    data_dir: Path
    ood_dirs: list[Path] = field(default_factory=list)

    def known_splits(self, contract: PreprocessContract, *, download: bool = False, progress: bool = True
                     ) -> tuple[ImageSet, ImageSet, ImageSet, ImageSet | None]:
        """``(train, val, test, held-out-classes test images or None)`` through ``contract``."""
        entry, arg = parse_reference(self.dataset.reference)
        train, val, test = entry.splits(arg, self.data_dir, contract, self.dataset, download=download, progress=progress)
        known = self.dataset.known_classes
        if known is None:
            return train, val, test, None
        names = self.dataset.known_names
        (train, _), (val, _), (test, held_out) = (_keep_known(s, known, names) for s in (train, val, test))
        held_out.name = f"{test.name}-unknown-classes"
        return train, val, test, held_out

    def unknown_sets(self) -> list[UnknownSet]:
        """The data set's default unknowns, or the ``--ood-dir`` folders when given."""
        if self.ood_dirs:
            return [_folder_unknowns(Path(d)) for d in self.ood_dirs]
        entry, arg = parse_reference(self.dataset.reference)
        return entry.unknowns(arg, self.data_dir, self.dataset)

    def load(self, contract: PreprocessContract, *, download: bool = False, progress: bool = True) -> OpenSetData:
        train, val, test, held_out = self.known_splits(contract, download=download, progress=progress)
        unknowns = [held_out] if held_out is not None and len(held_out) else []
        unknowns += [u.load(contract) for u in self.unknown_sets()]
        return OpenSetData(self.dataset.reference, train, val, test, self.dataset.known_names, unknowns)


def open_set_source(dataset: DatasetSpec, data_dir: Path | None = None, ood_dirs: list[Path] | None = None) -> OpenSetSource:
    return OpenSetSource(dataset, Path(data_dir) if data_dir is not None else default_data_dir(), list(ood_dirs or []))


def load_open_set_data(dataset: DatasetSpec | str, contract: PreprocessContract | None = None, data_dir: Path | None = None, *,
                       ood_dirs: list[Path] | None = None, download: bool = False, progress: bool = True) -> OpenSetData:
    """Known splits and unknown test sets of ``dataset`` (a spec record, or a reference with defaults)."""
    if isinstance(dataset, str):
        dataset, default_contract = describe_dataset(dataset, data_dir)
        contract = contract or default_contract
    if contract is None:
        raise ValueError("a preprocessing contract is needed")
    return open_set_source(dataset, data_dir, ood_dirs).load(contract, download=download, progress=progress)


def reference_source(reference: str, data_dir: Path | None, contract: PreprocessContract, split_seed: int = 0) -> Reference:
    """osr-infer's data set references (``mnist:test``, ``digits``, ``folder:PATH``, ``cifar10:test``...)."""
    registry = {**DATASETS, **REFERENCE_ONLY}
    name, _, arg = reference.partition(":")
    entry = registry.get(name)
    if entry is None:
        raise DataError(f"unknown data set reference {reference!r}; known: {reference_examples()}")
    if entry.needs_argument and not arg:
        raise DataError(f"{name} needs a path: {entry.example}")
    return entry.reference(arg, Path(data_dir) if data_dir is not None else default_data_dir(), contract, split_seed)


def reference_examples() -> str:
    return "mnist:test, mnist:train, cifar10:test, digits, folder:PATH, idx:PATH"


def is_reference(text: str) -> bool:
    """Whether a SOURCE argument names a data set (``digits``, ``mnist:test``, ``folder:...``)."""
    name, colon, _ = text.partition(":")
    return (name in DATASETS or name in REFERENCE_ONLY) and (bool(colon) or name == "digits")
