"""Atomic file writes: a temp file in the target folder, then a rename.

An interrupted run therefore never leaves a half-written model or metrics file behind.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from osr_infer.errors import OutputError


def current_umask() -> int:
    """The process umask, read without changing it where the system says (Linux), else by a swap."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stale_temps(target: str | Path) -> list[Path]:
    """Temp files of earlier writes to ``target`` whose process is gone (killed with SIGKILL)."""
    target = Path(target)
    found = []
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            pid = int(stale.name[len(target.name) + 2 :].split(".", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not process_alive(pid):
            found.append(stale)
    return found


def _remove_stale_temps(target: Path) -> None:
    for stale in stale_temps(target):
        stale.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def escape_undecodable(text: str) -> str:
    """``text`` with the bytes of a file name that are not UTF-8 (surrogate escapes) as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class OutputPathError(OutputError):
    """An output path that must not be replaced by a regular file (a link, a FIFO, a device, a folder)."""


def check_output_target(target: str | Path) -> Path:
    """Refuse to replace anything but a regular file: a symlink, FIFO, device or folder at
    ``target`` would silently become a regular file."""
    target = Path(target)
    if target.is_symlink():
        raise OutputPathError(f"{target} is a symbolic link: refusing to replace it (give the real path)")
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file (a FIFO, socket or device)"
        raise OutputPathError(f"{target} is {kind}: refusing to replace it")
    return target


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; it replaces ``target`` only on success.

    The file gets the mode a plain ``open()`` would (0666 less the umask), not mkstemp's 0600.
    The temp name carries the process id, so a later write to the same target removes what a
    killed run left behind.
    """
    target = check_output_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces (what names a checkpoint or a model)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def check_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove we can write there, with a clear error if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None
    return folder
