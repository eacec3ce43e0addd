"""``supermel bench``: the benchmark harness, :func:`supermel.bench.main`, given every argument after ``bench``.

``supermel.bench`` (a module or a package) is imported by name only when the command runs.
(Named ``bench_cmd`` so as not to be mistaken for :mod:`supermel.bench` itself.)
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ._common import _import_optional


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel bench`` and its options to the subcommands ``sub``."""
    sub.add_parser("bench", help="run the benchmark harness (arguments go to supermel.bench; see `supermel bench --help`)", add_help=False)


def run(argv: Sequence[str]) -> int:
    """Run ``supermel.bench.main(argv)``; its exit status (its own ``--help`` and usage errors included)."""
    bench = _import_optional("supermel.bench", "the benchmark harness", "bench")
    try:
        rc = bench.main(list(argv))
    except SystemExit as exc:  # its own argparse (--help, usage errors)
        rc = exc.code if isinstance(exc.code, int) or exc.code is None else 2
    return int(rc or 0)
