"""What ``SOURCE`` arguments mean: image files, folders, or data set references.

* a file or a folder (searched recursively, sorted, common image suffixes): unlabelled,
  or every image counted as *unknown* when passed with ``--unknown``;
* a data set reference from the registry (`osr_infer.data.registry`): ``mnist:test``,
  ``mnist:train``, ``cifar10:test`` (every image an unknown), ``digits`` (the test split of
  the model's own split seed plus the sample-photo crops), ``folder:PATH`` (one subfolder
  per class, e.g. what ``osr-train sample-images`` writes) and ``idx:PATH`` (the test split).

Labels follow the model spec's convention: a data set's class becomes the model's label of
the class with the same name, and anything the model does not know is ``UNKNOWN`` (-1), so
``mnist:test`` on a model trained on six digits scores the other four as unknowns. A
reference shadows a folder of the same name (write ``./digits`` for the folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osr_infer.errors import DataError, InputError
from osr_infer.preprocess import IMAGE_SUFFIXES, LeftOut, PreprocessContract, find_images
from osr_infer.spec import UNKNOWN, UNLABELLED, ModelSpec


@dataclass
class Source:
    """One SOURCE: either file paths (decoded later) or in-memory uint8 images, with labels.

    Labels: ``0..C-1`` a known class of the model, ``UNKNOWN`` an unknown, ``UNLABELLED`` no truth.
    """

    name: str
    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    note: str | None = None  # how the labels were read, for the user
    #: Where each in-memory item sits in the whole data set, when this source is a shard of it.
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.paths is None) == (self.images is None):
            raise ValueError("a source holds either paths or images")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self):
            raise ValueError(f"{self.name}: {len(self)} items but {len(self.labels)} labels")

    def __len__(self) -> int:
        if self.paths is not None:
            return len(self.paths)
        assert self.images is not None  # one or the other, checked when made
        return len(self.images)

    @property
    def from_files(self) -> bool:
        return self.paths is not None

    @property
    def file_paths(self) -> list[str]:
        """The paths of a source read from files."""
        if self.paths is None:
            raise TypeError(f"{self.name} holds images in memory, not files")
        return self.paths

    @property
    def arrays(self) -> np.ndarray:
        """The images of a source held in memory."""
        if self.images is None:
            raise TypeError(f"{self.name} holds files, not images in memory")
        return self.images

    @property
    def labelled(self) -> bool:
        return bool(np.any(self.labels != UNLABELLED))

    @property
    def item_positions(self) -> np.ndarray:
        """Each item's position in the whole source (a subset's items keep theirs)."""
        return self.positions if self.positions is not None else np.arange(len(self))

    def subset(self, keep: np.ndarray) -> "Source":
        """The items at ``keep`` (positions in this source, in order), their ids unchanged."""
        if self.paths is not None:
            return Source(self.name, self.labels[keep], paths=[self.paths[k] for k in keep.tolist()], note=self.note)
        return Source(self.name, self.labels[keep], images=self.arrays[keep], note=self.note, positions=self.item_positions[keep])

    def item_id(self, index: int) -> str:
        """The ``path`` column: the file path, or ``<source>:<index>`` for in-memory data sets."""
        if self.paths is not None:
            return self.paths[index]
        return f"{self.name}:{int(self.positions[index]) if self.positions is not None else index}"


def shard_of(key: str, count: int) -> int:
    """The shard of ``count`` that ``key`` falls in: the first 8 bytes of its BLAKE2b digest,
    modulo ``count``. The same on every machine, Python version and run (``hash()`` is not)."""
    import hashlib

    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_keys(source: Source) -> list[str]:
    """What decides an item's shard: a file's path relative to the SOURCE it was found under
    (the same wherever the tree is mounted), or an in-memory item's position."""
    if source.paths is None:
        return [str(int(i)) for i in source.item_positions]
    if "://" in source.name:  # a URL: the key below its prefix, as a local folder's files (one object: its name)
        prefix = source.name.rstrip("/") + "/"
        return [p[len(prefix):] if p.startswith(prefix) else p.rsplit("/", 1)[-1] for p in source.paths]
    root = Path(source.name)
    if root.is_dir():
        return [os.path.relpath(p, root) for p in source.paths]
    if len(source.paths) == 1:
        return [Path(source.paths[0]).name]
    common = os.path.commonpath(source.paths)  # a data set reference's files: relative to their common folder
    return [os.path.relpath(p, common) for p in source.paths]


def take_shard(source: Source, index: int, count: int) -> Source:
    """The items of ``source`` in shard ``index`` of ``count`` (`shard_of`), in their order;
    ``count`` runs over the shards classify every item exactly once."""
    return source.subset(np.flatnonzero([shard_of(key, count) == index for key in shard_keys(source)]))


def resolve_sources(
    specs: list[str], unknown_specs: list[str], data_dir: Path | None, contract: PreprocessContract, model_spec: ModelSpec | None,
    class_names: tuple[str, ...],
) -> list[Source]:
    """Resolve every SOURCE (and ``--unknown`` SOURCE) up front, so a typo fails before any work."""
    if not specs and not unknown_specs:
        raise InputError("nothing to classify: give at least one SOURCE (files, folders, mnist:test, cifar10:test, digits)")
    sources = [resolve_source(s, data_dir, contract, model_spec, class_names, unknown=unknown)
               for specs_of_kind, unknown in ((specs, False), (unknown_specs, True)) for s in specs_of_kind]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"source given more than once: {', '.join(duplicates)}")
    return sources


def map_labels(labels: np.ndarray, names: tuple[str, ...] | None, class_names: tuple[str, ...]) -> np.ndarray:
    """A data set's labels (indices into ``names``) as the model's: same class name, else UNKNOWN."""
    if names is None:
        return np.full(len(labels), UNKNOWN, dtype=np.int64)
    table = np.array([class_names.index(n) if n in class_names else UNKNOWN for n in names] + [UNKNOWN], dtype=np.int64)
    return table[np.where(labels >= 0, labels, len(names))]


def _is_reference(spec: str) -> bool:
    """Whether ``spec`` names a data set; the registry is imported only for what may be one
    (``name:...`` or ``digits``), so a run on plain files never loads the data-set readers."""
    if ":" not in spec and spec != "digits":
        return False
    from osr_infer.data.registry import is_reference

    return is_reference(spec)


def resolve_source(
    spec: str, data_dir: Path | None, contract: PreprocessContract, model_spec: ModelSpec | None,
    class_names: tuple[str, ...], *, unknown: bool = False,
) -> Source:
    if _is_reference(spec):
        source = _reference(spec, data_dir, contract, model_spec, class_names)
        if unknown:
            source.labels = np.full(len(source), UNKNOWN, dtype=np.int64)
        return source
    from osr_infer.remote import is_url

    if is_url(spec):
        return _url_source(spec, unknown)
    path = Path(spec)
    if not path.exists():
        prefix = spec.split(":", 1)[0]
        if ":" in spec or prefix in ("mnist", "cifar10", "folder", "idx"):
            from osr_infer.data.registry import reference_examples

            raise InputError(f"no such file, folder or data set reference: {spec} (references: {reference_examples()})")
        raise InputError(f"no such file or folder: {spec}")
    left_out = LeftOut()
    try:
        files = find_images(path, left_out)
    except OSError as exc:
        raise InputError(f"cannot list {spec}: {exc.strerror or exc}") from None
    skipped = left_out.describe()
    if not files:
        raise InputError(f"no image files under {spec} (looked recursively for {', '.join(IMAGE_SUFFIXES)})"
                         + (f"; left out {skipped}" if skipped else ""))
    note = f"{spec}: left out {skipped}" if skipped else None
    return Source(spec, np.full(len(files), UNKNOWN if unknown else UNLABELLED, dtype=np.int64), paths=files, note=note)


def _url_source(url: str, unknown: bool) -> Source:
    """The images at a URL (`osr_infer.remote`): one object, or every image under a prefix."""
    from osr_infer.remote import list_images, redact

    files = list_images(url, IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no image files under {redact(url)} (looked recursively for {', '.join(IMAGE_SUFFIXES)})")
    return Source(url, np.full(len(files), UNKNOWN if unknown else UNLABELLED, dtype=np.int64), paths=files)


def _reference(spec: str, data_dir: Path | None, contract: PreprocessContract, model_spec: ModelSpec | None,
               class_names: tuple[str, ...]) -> Source:
    """A data set reference, read through the registry with the model's preprocessing."""
    from osr_infer.data.registry import reference_source

    # The digits split depends on the seed: use the model's, so its training digits are never scored as test digits.
    seed = model_spec.dataset.split_seed if model_spec is not None and model_spec.dataset.name == "digits" else 0
    try:
        ref = reference_source(spec, data_dir, contract, seed)
    except DataError as exc:
        message = str(exc)
        raise DataError(message if message.startswith(f"{spec}:") else f"{spec}: {message}") from None
    labels = map_labels(ref.labels, ref.class_names, class_names)
    note = None
    if ref.class_names is not None:
        strangers = [n for n in ref.class_names if n not in class_names]
        if strangers and len(strangers) < len(ref.class_names):
            note = f"{spec}: classes the model does not know count as unknowns: {', '.join(strangers)}"
        elif strangers:
            note = f"{spec}: none of its classes is one of the model's; every image counts as an unknown"
    if ref.images is not None:
        return Source(ref.name, labels, images=ref.images, note=note)
    return Source(ref.name, labels, paths=ref.paths, note=note)
