"""Placeholder until its issue lands."""

import sys


def main() -> None:
    print("osr_export: not implemented yet", file=sys.stderr)
    sys.exit(2)
