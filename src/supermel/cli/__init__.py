"""The ``supermel`` command line (also ``python -m supermel``).

Subcommands
-----------
``compute``
    Mel spectrograms of audio files (or of the bundled example) to ``.npy``/``.npz``.
``batch``
    Preprocess a directory tree of audio files, mirroring it, with a manifest.
``plot``
    A labelled image of a saved mel spectrogram or of an audio file.
``presets``
    List the model front ends, or print one's configuration as JSON.
``bench``
    The benchmark harness (:mod:`supermel.bench`).
``serve``
    The live WebSocket server and its page (:mod:`supermel.serve`).
``stream``
    Stream an audio file to a ``supermel serve`` server; save the frames.

Every output is written atomically (a temporary file in the same directory,
then :func:`os.replace`), so an interrupted or failed run never leaves a
partial file, and every output path is checked before anything is computed.
Invalid parameters, paths or audio (:class:`supermel.ParameterError`) and
usage errors print one line, ``supermel: error: <message>`` (usage errors end
with a ``(see `supermel COMMAND --help`)`` hint), and exit with status 2.
Warnings (e.g. a truncated WAV file) print ``supermel: warning: <message>``.

Heavy modules (matplotlib, tqdm, the presets) are imported only by the
subcommands that need them.

Layout
------
One module per subcommand, each with ``add_parser(sub)`` (its options) and
``run(args)``: :mod:`.compute`, :mod:`.batch`, :mod:`.plot`,
:mod:`.presets_cmd`, :mod:`.serve_cmd`, :mod:`.stream_cmd` and :mod:`.bench_cmd` (``run(argv)``: its arguments go to
:mod:`supermel.bench` unparsed). What they share, which imports none of them:
:mod:`._common` (output files, path checks, argument types, optional imports),
:mod:`._pipeline` (the mel spectrogram options and the computation they make)
and :mod:`._figure` (the image); ``batch`` alone uses :mod:`._corpus` (listing and
planning), :mod:`._worker` (the work), :mod:`._pool` (its worker processes, with
:mod:`._forkserver_guard`) and :mod:`._ray_engine`. This module parses, dispatches and turns
errors into exit statuses.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Dict, NoReturn, Optional, Sequence

from .._errors import ParameterError
from .._version import __version__
from . import batch, bench_cmd, compute, plot, presets_cmd, serve_cmd, stream_cmd
from ._common import MANIFEST_NAME

__all__ = ["main", "build_parser", "MANIFEST_NAME"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``supermel: error: <message> (see `supermel CMD --help`)``, status 2.

    ``--help`` is unchanged. The subcommands' parsers are this class too
    (``add_subparsers`` uses the parent's class); ``commands`` maps their names
    to them, so that unrecognised arguments point at the subcommand's help.
    """

    commands: Dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"supermel: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = getattr(self, "commands", {}).get(getattr(ns, "command", None), self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``supermel`` command (all subcommands).

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> from supermel.cli import build_parser
    >>> args = build_parser().parse_args(["plot", "speech.wav", "-o", "speech.png"])
    >>> args.command
    'plot'
    """
    parser = _Parser(
        prog="supermel",
        description="librosa-exact mel spectrograms on PyTorch: compute, preprocess datasets, plot, list front ends, serve live streams, benchmark.",
        epilog="Run `supermel COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"supermel {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (compute, batch, plot, presets_cmd, serve_cmd, stream_cmd, bench_cmd):  # the order of `supermel --help`
        command.add_parser(sub)
    parser.commands = dict(sub.choices)
    return parser


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Optional[str] = None) -> None:
    print(f"supermel: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``supermel`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success; 1 some batch files (or some of several
        ``compute`` inputs) failed, or an output could not be written; 2 invalid
        parameters, audio or usage (the message is printed as
        ``supermel: error: ...``); 3 ``batch`` stopped because the disk is full
        (ENOSPC/EDQUOT); 130 interrupted.

    Examples
    --------
    >>> from supermel.cli import main
    >>> main(["presets", "--json", "wav2lip"]) == 0  # doctest: +ELLIPSIS
    {...
      "hop_length": 200,
    ...}
    True
    >>> main(["compute", "--n-fft", "-1", "--example"])
    2
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args_list[:1] == ["bench"]:
                return bench_cmd.run(args_list[1:])
            parser = build_parser()
            try:
                args = parser.parse_args(args_list)
            except SystemExit as exc:  # --help, --version, usage errors: return instead of exiting
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            if args.command is None:
                parser.print_help()
                return 0
            handler = {"compute": compute.run, "batch": batch.run, "plot": plot.run, "presets": presets_cmd.run,
                       "serve": serve_cmd.run, "stream": stream_cmd.run}[args.command]
            return handler(args)
        except ParameterError as exc:
            print(f"supermel: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                return 0
            print(f"supermel: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("supermel: interrupted", file=sys.stderr)
            return 130
