"""The ``osr-infer`` command's entry point.

It boots the forkserver that decoding workers fork from (`osr_infer.workers.boot_early`)
before importing the CLI, so that the server's imports overlap the CLI's, ONNX Runtime's and
the model's loading instead of following them; then it runs `osr_infer.cli.main`. Worker
processes re-run this module (multiprocessing's rule for the main script): it imports nothing.
"""

from __future__ import annotations

import sys


def main() -> None:
    from osr_infer.workers import boot_early

    boot_early(sys.argv[1:])
    from osr_infer.cli import main as cli_main

    cli_main()
