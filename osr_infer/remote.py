"""Sources and models at URLs, through fsspec: ``s3://bucket/prefix/``, ``gs://...``,
``https://host/image.jpg``, ``file:///path/``.

A URL SOURCE that names a folder (a prefix) is listed recursively, image suffixes only, in
sorted order, as a local folder is; a URL that names one object is that file; an ``http(s)``
URL is always one file (HTTP has no listing: give one URL per image). Objects are read
in chunks (`read_objects`: one concurrent request per object of a decoding chunk, each read
cut at `MAX_OBJECT_BYTES`), so memory is bounded by a chunk, never by the listing. Credentials
come from where each file system looks for them (for S3: ``AWS_*`` variables, ``~/.aws``, the
instance's role; ``AWS_ENDPOINT_URL`` for an S3-compatible server). A URL that carries
``user:password@`` is refused (it would be printed with every row), and shown without it.

fsspec comes with the base install (it is small and pure Python); each protocol's file system is
its own package: ``s3fs`` (the ``[s3]`` extra), ``gcsfs``, ``aiohttp`` for ``https``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from osr_infer.errors import InputError, ModelError

#: ``scheme://``: what tells a URL from a path (a Windows drive ``C:\\`` has no ``//``).
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: An object larger than this is not an image this toolkit reads (it is reported, not fetched).
MAX_OBJECT_BYTES = 256 << 20
#: What to install for a protocol whose file system is missing.
INSTALL = {"s3": "'osr-toolkit[s3]'", "s3a": "'osr-toolkit[s3]'", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp",
           "az": "adlfs", "abfs": "adlfs"}
#: Protocols without listings: a URL is one file.
SINGLE_FILE_PROTOCOLS = ("http", "https")
#: Where models read from URLs are kept (by the SHA-256 of their URL): `fetch_model`.
MODEL_CACHE = "osr-toolkit-models"


def is_url(text: str | os.PathLike[str]) -> bool:
    return isinstance(text, str) and bool(URL_PATTERN.match(text))


def redact(url: str) -> str:
    """``url`` without the ``user:password@`` of its authority, to print."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def file_system(url: str) -> tuple[Any, str]:
    """fsspec's file system for ``url`` and the path within it; an InputError saying what to
    install for a protocol whose package is missing, or naming an unknown protocol."""
    import fsspec

    if redact(url) != url:
        raise InputError(f"{redact(url)}: the URL carries credentials (user:password@), which would be written with every "
                         "row; give them as the store's library reads them (environment variables, its config file)")
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        protocol = url.split("://", 1)[0].lower()
        install = INSTALL.get(protocol)
        raise InputError(f"{redact(url)}: {exc}" + (f" (pip install {install})" if install else "")) from None
    except ValueError as exc:
        raise InputError(f"{redact(url)}: {exc}") from None


def list_images(url: str, suffixes: Sequence[str]) -> list[str]:
    """The image files at ``url``: the object itself, or every object under the prefix whose
    suffix is in ``suffixes``, sorted, as full URLs. An InputError when there is none or the
    store refuses (the reason, never the credentials)."""
    fs, root = file_system(url)
    protocol = url.split("://", 1)[0]
    if protocol.lower() in SINGLE_FILE_PROTOCOLS:
        return [url]  # read when decoded: a failure is that file's, reported and skipped
    try:
        if not url.endswith("/") and fs.isfile(root):
            return [url]
        found = fs.find(root, withdirs=False)
    except Exception as exc:  # noqa: BLE001 - each store raises its own tree (botocore's is not OSError)
        raise InputError(f"cannot list {redact(url)}: {_reason(exc)}") from None
    with contextlib.suppress(AttributeError):
        fs.invalidate_cache()  # the store's own cache of the listing (with every object's details)
    # One list, filtered and turned into URLs in place: a listing of millions is never held twice.
    prefix = url if url.endswith("/") else url + "/"
    root_key = root.rstrip("/") + "/"
    kept = 0
    for key in found:
        if os.path.splitext(key)[1].lower() in suffixes:
            found[kept] = prefix + key[len(root_key):] if key.startswith(root_key) else f"{protocol}://{key}"
            kept += 1
    del found[kept:]
    found.sort(key=lambda u: u.split("/"))  # component by component, as a local folder's files
    return found


def read_objects(urls: Sequence[str]) -> list[bytes | str]:
    """The bytes of each URL (one concurrent request each where the file system is
    asynchronous), or the reason it could not be read, in order."""
    by_system: dict[int, tuple[Any, list[int], list[str]]] = {}
    for k, url in enumerate(urls):
        fs, path = file_system(url)
        entry = by_system.setdefault(id(fs), (fs, [], []))
        entry[1].append(k)
        entry[2].append(path)
    out: list[bytes | str] = ["" for _ in urls]
    for fs, positions, paths in by_system.values():
        try:
            data = fs.cat_ranges(paths, [0] * len(paths), [MAX_OBJECT_BYTES + 1] * len(paths), on_error="return")
        except Exception as exc:  # noqa: BLE001 - the store's failure is each file's reason
            data = [exc] * len(paths)
        for k, item in zip(positions, data, strict=True):
            if isinstance(item, BaseException):
                out[k] = _reason(item)
            elif len(item) > MAX_OBJECT_BYTES:
                out[k] = f"image too large (over {MAX_OBJECT_BYTES >> 20} MiB)"
            else:
                out[k] = bytes(item)
    return out


def fetch_model(url: str) -> Path:
    """A local copy of the model at ``url`` (a new copy each time: the object may have
    changed), in the user's cache folder; a ModelError when it cannot be read."""
    fs, path = file_system(url)
    try:
        data = fs.cat_file(path)
    except Exception as exc:  # noqa: BLE001 - each store raises its own tree
        raise ModelError(f"cannot read the model {redact(url)}: {_reason(exc)}") from None
    from osr_infer.io import atomic_path

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "osr-toolkit" / "models"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = Path(tempfile.gettempdir()) / MODEL_CACHE
        cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{Path(path).name or 'model.onnx'}"
    with atomic_path(target) as temp:
        temp.write_bytes(data)
    return target


def _reason(exc: BaseException) -> str:
    """An exception as a short reason: its class for a bare one, its message otherwise."""
    text = redact((str(exc).strip() or type(exc).__name__).splitlines()[0])
    if isinstance(exc, FileNotFoundError):
        return f"not found: {text}"
    if isinstance(exc, PermissionError):
        return f"access denied: {text}"
    if not isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {text}"  # e.g. botocore's NoCredentialsError
    return text
