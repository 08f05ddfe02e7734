"""Memory of work done in a fresh interpreter: the pytest process's own peak (``ru_maxrss``) already
holds every earlier test's, so a check against it cannot fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PEAK = "next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) / 1024"


def extra_peak_mb(setup: str, call: str, *args: str) -> tuple[float, str]:
    """Run ``setup`` (imports, inputs; ``sys.argv[1:]`` is ``args``) and then ``call`` in a fresh
    Python; the peak resident memory (VmHWM) that ``call`` added over ``setup``'s, in MiB, and
    what the process printed. An exception in ``call`` is printed, not raised."""
    code = (
        "import sys\n" + setup + "\n"
        f"before = {_PEAK}\n"
        "try:\n" + "".join(f"    {line}\n" for line in call.splitlines()) +
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
        f"print({_PEAK} - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    return float(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr
