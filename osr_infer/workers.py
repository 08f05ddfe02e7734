"""Worker processes for decoding, without numpy: how they start, and how they clean up.

Kept apart from `osr_infer.decode` so that ``osr-infer`` can boot the forkserver the
workers fork from before it imports anything heavy (`boot_early`, called by
``osr_infer.launch``): the server then imports the decoder on the second core while the main
process imports ONNX Runtime and loads the model, instead of after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import multiprocessing.context

#: What the forkserver imports once, so that every worker it forks has it: the decoder.
PRELOAD = ["__main__", __name__, "osr_infer.decode"]


def _start_method() -> str:
    """fork only a single-threaded process; otherwise forkserver (spawn where there is neither).

    Forking a process with other threads (numpy's BLAS pool, ONNX Runtime's workers, a
    progress bar) can hand the child a lock some thread held at that instant: such a child
    hangs. Python 3.12 warns about it, 3.14 stopped defaulting to fork.
    """
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:  # no procfs: assume the worst
        threads = 2
    if "fork" in methods and threads == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def prepare_workers(method: str | None = None) -> "multiprocessing.context.BaseContext":
    """The context worker processes start from (``method``, or `_start_method`'s choice);
    a forkserver is booted now, in the background, so that it imports the decoder while the
    caller loads the model and lists files."""
    import multiprocessing

    context = _decoder_context(multiprocessing.get_context(method or _start_method()))
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        # Workers fork from a server that has imported the decoder once. Each worker also re-runs
        # the main script (multiprocessing's rule): osr-infer's is osr_infer.launch, which imports
        # nothing heavy. ("__main__" in the list is honoured from Python 3.12 on.)
        context.set_forkserver_preload(PRELOAD)
        # The server and the workers watch this process: if it is killed (SIGKILL runs no
        # clean-up), they exit within a poll and the server removes multiprocessing's folder.
        from multiprocessing import util

        os.environ[MAIN_PID_ENV] = str(os.getpid())
        os.environ[MAIN_TEMP_ENV] = util.get_temp_dir()
        with without_main_script():
            forkserver.ensure_running()
    return context


_PREPARING = threading.Lock()


@contextlib.contextmanager
def without_main_script() -> Iterator[None]:
    """While a decoding process starts: multiprocessing's preparation data without the caller's
    main script. A worker needs the decoder only; re-running the caller's script in it (the
    rule for spawn and forkserver) would run a plain script's top level once per worker, and a
    script without an ``if __name__ == "__main__":`` guard that decodes files would start its
    own pool there and fail. Only multiprocessing's function is swapped, for the instant a
    process starts; the caller's ``__main__`` is untouched."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def prepared(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _PREPARING:
        spawn.get_preparation_data = prepared
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def _decoder_context(context: "multiprocessing.context.BaseContext") -> "multiprocessing.context.BaseContext":
    """``context`` whose processes start `without_main_script` (fork copies the process
    and needs no preparation: it is returned as it is)."""
    method = context.get_start_method()
    if method not in _DECODER_PROCESSES:
        return context
    process = getattr(sys.modules[__name__], _DECODER_PROCESSES[method])
    decoder_context: multiprocessing.context.BaseContext = type(f"Decoder{type(context).__name__}", (type(context),), {"Process": process})()
    return decoder_context


#: The process classes of `_decoder_context`, by start method: made on first use
#: (`__getattr__`; a worker unpickling its process object finds them the same way).
_DECODER_PROCESSES = {"forkserver": "DecoderForkServerProcess", "spawn": "DecoderSpawnProcess"}


def __getattr__(name: str) -> type:
    method = next((m for m, n in _DECODER_PROCESSES.items() if n == name), None)
    if method is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from multiprocessing import context as mp_context

    base = mp_context.ForkServerProcess if method == "forkserver" else mp_context.SpawnProcess

    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocessing's hook
        with without_main_script():
            return base._Popen(process_obj)

    cls = type(name, (base,), {"_Popen": staticmethod(_Popen), "__module__": __name__})
    globals()[name] = cls
    return cls


#: Set for the helper processes: the pid of the osr-infer process they serve, and its
#: multiprocessing temp folder.
MAIN_PID_ENV = "OSR_INFER_MAIN_PID"
MAIN_TEMP_ENV = "OSR_INFER_MP_TEMP"
#: Seconds between two looks at whether the main process is still alive.
WATCH_INTERVAL = 0.2


def _watch_main(pid: int, temp_dir: str | None = None) -> None:
    """In a helper process: exit as soon as process ``pid`` is gone (removing ``temp_dir``)."""
    import threading

    from osr_infer.io import process_alive

    def watch() -> None:
        while process_alive(pid) and os.getppid() != 1:  # re-parented to init: whoever started us is gone
            time.sleep(WATCH_INTERVAL)
        if temp_dir:
            import shutil

            shutil.rmtree(temp_dir, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=watch, name="osr-watch-main", daemon=True).start()


def _main_pid() -> int | None:
    value = os.environ.get(MAIN_PID_ENV, "")
    return int(value) if value.isdigit() and int(value) != os.getpid() else None


_MAIN_PID = _main_pid()
if _MAIN_PID is not None and "multiprocessing.forkserver" in sys.modules:  # imported by the forkserver's preload
    _watch_main(_MAIN_PID, os.environ.get(MAIN_TEMP_ENV))
    if os.environ.get(MAIN_TEMP_ENV):  # the server also ends when its pipe from the main process closes
        import atexit
        import shutil

        atexit.register(shutil.rmtree, os.environ[MAIN_TEMP_ENV], ignore_errors=True)


def _noop() -> None:
    return None


def _worker_init(main_pid: int | None = None) -> None:
    """Ctrl-C is the main process's to handle: it stops the pool and removes partial output.
    A worker exits by itself when the main process is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_heap()
    if main_pid is not None:
        _watch_main(main_pid)


def boot_early(argv: list[str]) -> None:
    """Boot the forkserver now if this ``osr-infer`` command line will decode files in worker
    processes: not for help, ``--workers 0`` or a handful of image files (the CLI decodes
    those in-process). Its imports then overlap the main process's."""
    if not argv or any(arg in ("--help", "-h", "--workers=0") or arg.startswith("--cluster") for arg in argv):
        return  # nothing to decode here (a cluster's workers decode)
    if any(a == "--workers" and b == "0" for a, b in itertools.pairwise(argv)):
        return
    sources = []
    args = iter(argv)
    for arg in args:
        if arg in _VALUE_OPTIONS:
            next(args, None)  # the option's value
        elif not arg.startswith("-"):
            sources.append(arg)  # a source, or --unknown's (a source too)
    if few_plain_files(sources):
        return
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    try:  # forkserver, whatever this still single-threaded process would choose: the pool starts after numpy's threads
        prepare_workers("forkserver")
    except Exception:  # noqa: BLE001 - booting early is an optimisation: the pool boots it later, or says why
        return


#: Runs of at most this many files, and this many bytes, decode in-process by default (the
#: CLI's rule, and this module's for booting early): a worker process takes about 0.3 s to
#: start, the time to decode some hundreds of small images but only about ten phone photos.
SMALL_RUN_FILES = 64
SMALL_RUN_BYTES = 4 << 20


def small_run(paths: list[str]) -> bool:
    """Whether ``paths`` (files) are few and small enough to decode in-process."""
    if len(paths) > SMALL_RUN_FILES:
        return False
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:  # unreadable: reported when decoded
            continue
    return total <= SMALL_RUN_BYTES


def few_plain_files(sources: list[str]) -> bool:
    """Are all the sources image files (no folder, no data set reference), few and small
    (`small_run`)? Such a run decodes in-process."""
    return bool(sources) and all(os.path.isfile(source) for source in sources) and small_run(sources)


#: osr-infer's options that take a value that is not a source.
_VALUE_OPTIONS = frozenset({"-o", "--model", "--threshold", "--score-threshold", "--batch-size", "--workers", "--output",
                            "--data-dir", "--parity", "--atol", "--decoder", "--shard", "--cluster", "--partition-size"})


#: glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: A decoding worker's heap keeps up to this much freed memory for the next chunk.
HEAP_KEEP = 256 << 20


def keep_heap() -> None:
    """Let this process's heap keep the memory a chunk's numpy temporaries free (glibc only).

    By default glibc serves blocks of some hundred kilobytes with mmap, or trims the heap once
    they are freed, so every whole-stack temporary of the layout step (a few MB) comes back as
    fresh pages that fault in one by one: measured here, that doubled the layout step's time
    (85 against 46 us an image). A worker's heap then holds its peak, some tens of MB."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, HEAP_KEEP // 4)
        libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP)
    except (OSError, AttributeError):  # not glibc: its allocator's defaults
        pass
