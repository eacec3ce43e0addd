"""Command line interface (placeholder until the CLI issue lands): ``--version``."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ._version import __version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="supermel", description="librosa-exact mel spectrograms")
    parser.add_argument("--version", action="version", version=f"supermel {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
