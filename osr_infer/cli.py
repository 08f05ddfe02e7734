"""Placeholder until its issue lands."""

import sys


def main() -> None:
    print("osr_infer: not implemented yet", file=sys.stderr)
    sys.exit(2)
