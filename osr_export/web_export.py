"""``osr-export --format web``: a static folder that runs the exported model in a browser.

The folder holds the page (``index.html``, its scripts), ``model.onnx`` (the verified ONNX
export, metadata included) and ONNX Runtime Web's wasm runtime, copied from the npm package
pinned in ``osr_export/web/package-lock.json`` (``make web-runtime`` runs ``npm ci`` there). Any
static file server can host it; nothing is fetched from the network at page load. The page reads
the score, threshold, class names and preprocessing contract from the model's own metadata, and
preprocesses images with the contract's JavaScript port (``static/contract.js``), the layout
step and EXIF orientation included.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from osr_infer.errors import ExportError
from osr_infer.io import current_umask

#: Where the page's own files are (package data).
STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"
#: The npm project that pins onnxruntime-web (package.json + package-lock.json).
NPM_PROJECT = Path(__file__).resolve().parent / "web"
#: Where ``npm ci`` in NPM_PROJECT puts the runtime.
DEFAULT_RUNTIME = NPM_PROJECT / "node_modules" / "onnxruntime-web" / "dist"
#: The runtime files the page needs: ONNX Runtime Web's wasm-only build (no WebGL/WebGPU code).
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: The page's files, all copied.
PAGE_FILES = ("index.html", "app.js", "osr.js", "contract.js", "png.js", "decode.js", "metadata.js", "serve.py")
#: The folder's name inside the export's output folder.
WEB_DIRNAME = "web"
RUNTIME_ENV = "OSR_WEB_RUNTIME"


class WebRuntimeMissing(ExportError):
    """ONNX Runtime Web's files are not where they were looked for."""


def pinned_version() -> str:
    """The onnxruntime-web version package.json pins."""
    return json.loads((NPM_PROJECT / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def find_runtime(explicit: Path | None = None) -> tuple[Path, str]:
    """The folder with ONNX Runtime Web's files and its version: ``--web-runtime``, then
    ``$OSR_WEB_RUNTIME``, then ``osr_export/web/node_modules`` (``make web-runtime``)."""
    env = os.environ.get(RUNTIME_ENV)
    folder = Path(explicit) if explicit is not None else Path(env) if env else DEFAULT_RUNTIME
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        how = (f"run `make web-runtime` (npm ci in {NPM_PROJECT}) or pass --web-runtime DIR"
               if explicit is None and not env else "give the dist folder of the onnxruntime-web npm package")
        raise WebRuntimeMissing(f"the web format needs ONNX Runtime Web's {', '.join(missing)} in {folder}: {how}")
    version = "unknown"
    package = folder.parent / "package.json"
    if package.is_file():
        try:
            version = str(json.loads(package.read_text()).get("version", "unknown"))
        except (OSError, ValueError):
            pass
    return folder, version


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` only on success
    (the old folder is moved aside, the new one renamed into place, the old one removed)."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(f"{target} exists and is not a folder; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~current_umask())
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.{os.getpid()}.old"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bundle(folder: Path, onnx_model: Path, runtime: Path, runtime_version: str) -> list[str]:
    """Fill ``folder`` with the page, the model and the runtime; returns the files written."""
    (folder / "ort").mkdir()
    for name in PAGE_FILES:
        shutil.copyfile(STATIC_DIR / name, folder / name)
    for name in RUNTIME_FILES:
        shutil.copyfile(runtime / name, folder / "ort" / name)
    shutil.copyfile(onnx_model, folder / "model.onnx")
    (folder / "README.txt").write_text(
        "A static page that runs model.onnx in the browser with ONNX Runtime Web "
        f"{runtime_version} (wasm).\nHost this folder with any static file server, e.g.\n\n"
        "    python3 serve.py 8000     (cross-origin isolated: ONNX Runtime Web may use several threads)\n"
        "    python3 -m http.server --directory . 8000     (one thread)\n\nthen open http://localhost:8000/. "
        "Opening index.html as a file:// URL does not work: browsers do not load modules and wasm from disk.\n"
    )
    umask = current_umask()
    written = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)
            written.append(str(path.relative_to(folder)))
        else:
            os.chmod(path, 0o777 & ~umask)
    return written
