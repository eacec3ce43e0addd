"""``supermel batch``: featurise a corpus (a folder tree of audio files, or a list of them), with a manifest.

The driver lists and plans the work (:mod:`._corpus`): the inputs, where each output goes, what is
already done. An *engine* then runs it: ``local`` (the default) in this process or in worker
processes on this machine (:mod:`._pool`), ``ray`` on a Ray cluster (:mod:`._ray_engine`). Either
way each worker (:mod:`._worker`) decodes, featurises and writes its outputs itself, atomically,
and returns only small manifest rows; one file that fails is recorded in the manifest and the
others are still written. tqdm, when installed, shows the progress (files/s and hours of audio/s).

After the engine: inputs that share an output name with one that failed take it over (a second
round), the outputs on disk that no report covers are recorded (:func:`_reconcile`), everything
else not processed is ``not started``, and a summary is printed (:func:`_print_summary`). A full
disk stops the run (exit status :data:`DISK_FULL_STATUS`).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import math
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._errors import ParameterError
from .._version import __version__
from . import _corpus, _pool, _worker
from ._common import MANIFEST_NAME, _check_output, _finite_json, _number, _path_kind, _positive_int, _write_json
from ._pipeline import _add_core_options, _Pipeline

__all__ = ["add_parser", "run"]

Rows = List[Tuple[int, Dict[str, Any], List[str]]]

_EPILOG = """\
inputs:
  IN is a folder: every audio file soundfile can read under it (wav, flac, ogg/opus, mp3, aiff,
  au, caf, w64, rf64, sph, ...; extensions in any case), outputs mirroring its tree. --glob narrows
  that to the audio files a pattern matches (case-sensitive, e.g. '**/*.flac'). A summary gives the
  files found per extension and the files ignored.
  IN is a list (.txt, .lst, .csv, .tsv, .jsonl, .json, optionally .gz): the files it names, as
  lhotse and NeMo manifests do. Text: one path per line, an output name after a tab. CSV/TSV: a
  header with a path column (audio_filepath, path, audio_path, audio, file, filename, wav, source)
  and optionally 'output', or no header (the first cell an audio file: path, then output); a
  header naming no path column is refused (exit 2, nothing written). JSON
  lines: objects with one of those keys (NeMo), or lhotse recordings (sources; the id names the
  output). Relative paths are relative to the list's folder; outputs without a name mirror the
  paths relative to the list's folder (or, when files lie outside it, to their common folder).

outputs:
  One .npy (or .npz) per input, or with --shard-size N one .npz shard per N inputs
  (OUT_DIR/shards/shard-000000.npz: one array per input under its output name without the
  suffix, e.g. 'sub/a', plus the members' manifest fields) and an index, OUT_DIR/%(index)s.
  Every output is written atomically (a temporary file renamed into place: a killed run never
  leaves a partial output; --fsync also flushes it to disk before it counts as done); temporary
  files left by a killed run are removed at the start and end of the next. Finished outputs (finished shards, holding no failed file) are
  skipped unless --overwrite: a rerun resumes. Two runs must not write to one OUT_DIR at once.

engines:
  local  worker processes on this machine (--workers, default 1), one torch thread each.
  ray    a Ray cluster (pip install 'supermel[ray]'): without --address a local Ray instance is
         started; --address auto joins the cluster this machine belongs to (on a cluster node,
         or under `ray job submit`); --address HOST:PORT joins one by its address (Ray >= 2.59
         clusters use token authentication: set RAY_AUTH_MODE=token). --workers caps the actors
         (default: every CPU of the cluster, or every GPU with --device cuda: one GPU per actor).
         Every node must see IN, the audio files and OUT_DIR at the same paths (a shared
         filesystem: NFS, Lustre, a FUSE mount); this is checked on each node before starting,
         and supermel must be installed on every node.

faults:
  A file that cannot be processed is 'failed' in the manifest (with its reason) and the others are
  still written. Two inputs with one output name (a.wav and a.flac -> a.npy): the second is
  'duplicate output' once the first's output is produced; if the first fails, the second is
  computed in its place (its manifest entry says which input it replaces). A worker process that
  dies (kill -9, out of memory) is replaced; the file it was on is retried once, then 'failed'
  (worker died); the other workers go on. A full disk (ENOSPC, or EDQUOT: over quota) stops the
  run: no new file is started, the files being processed finish or are abandoned (never a
  partial output), the manifest lists the files 'not started', and the exit status is 3. Ctrl-C
  does the same (the files not reached are 'not started', not failed; exit 130); a second Ctrl-C
  ends the workers at once. kill -9 of this process ends its workers and fork server too. The
  manifest always matches the outputs on disk. A rerun resumes.

summary:
  One line of counts (done, skipped, failed, not started), a line per reason for the files
  skipped ('1,500 skipped: output exists') and not started, and a line per failed file (with -q:
  a line per reason). The manifest lists every file.

exit status: 0 every file done or skipped, 1 any failed, 2 invalid options (nothing written),
  3 stopped by a full disk, 130 interrupted.
""" % {"index": _corpus.SHARD_INDEX_NAME}


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel batch`` and its options to the subcommands ``sub``."""
    p = sub.add_parser(
        "batch",
        help="featurise a corpus: a folder tree or a list of audio files",
        description="Compute features for every audio file under IN (a folder) or named by IN (a list), writing them under "
        "OUT_DIR. Existing outputs are skipped unless --overwrite; files that cannot be processed are reported (and recorded "
        f"in OUT_DIR/{MANIFEST_NAME}) while the others are still written.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_dir", metavar="IN", help="folder of audio files, or a list of them (.txt, .csv, .jsonl; see 'inputs' below)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--glob", default=None, help="only the audio files this pattern matches, relative to IN (quote it, e.g. '**/*.flac'; default: every audio file)")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="local: worker processes (default 1); ray: at most N actors (default: the cluster's CPUs, or GPUs with --device cuda)")
    p.add_argument("--format", choices=("npy", "npz"), help="one file per input: npy (default) or npz (mel + metadata); shards are always npz")
    p.add_argument("--shard-size", dest="shard_size", type=_positive_int, default=None, metavar="N",
                   help="write one .npz shard per N inputs plus an index instead of one file per input (e.g. 1000)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes (default) or a Ray cluster")
    p.add_argument("--address", default=None, metavar="ADDR", help="with --engine ray: the cluster to join ('auto', or HOST:PORT); default: start a local Ray instance")
    p.add_argument("--fsync", action="store_true",
                   help="flush every output to disk before reporting it done (slower on many filesystems; without it a power cut "
                   "can leave empty outputs, which a rerun recomputes)")
    p.add_argument("--min-duration", dest="min_duration", type=_number, default=0.0, metavar="SEC", help="skip files shorter than SEC seconds (reported as 'too short'; default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display, and failed files summarised per reason instead of a line each")
    _add_core_options(p)


# =========================================================================== progress
class _Progress:
    """tqdm when installed, else a plain counter on stderr; with files/s and hours of audio/s."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.seconds = 0.0  # audio processed so far
        self.start = time.perf_counter()
        self.bar: Any = None
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 10)
        self.next_print = self.step
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, unit="file", desc="supermel batch", file=sys.stderr, dynamic_ncols=True)

    def _rates(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return f"{self.done / elapsed:.1f} files/s, {self.seconds / 3600.0 / elapsed:.3g} h of audio/s"

    def update(self, n: int = 1, seconds: float = 0.0) -> None:
        self.done += n
        self.seconds += seconds
        if not self.enabled or n == 0:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.seconds / 3600.0 / max(time.perf_counter() - self.start, 1e-9):.3g} h audio/s", refresh=False)
            self.bar.update(n)
        elif self.tty:
            print(f"\rsupermel batch: {self.done}/{self.total} files ({self._rates()})", end="", file=sys.stderr, flush=True)
        elif self.done >= self.next_print or self.done == self.total:
            self.next_print = (self.done // self.step + 1) * self.step
            print(f"supermel batch: {self.done}/{self.total} files ({self._rates()})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.tty and self.total:
            print(file=sys.stderr)


# =========================================================================== inputs
def _excluded_reason(in_dir: Path, out_dir: Path, excluded: List[Path], glob: Optional[str]) -> Tuple[str, str]:
    """Why audio files were left out (the output folder is, is in or holds the input folder), and a hint."""
    in_abs, out_abs = in_dir.resolve(), out_dir.resolve()
    hint = f"give an output folder outside {str(in_dir)!r}"
    if out_abs == in_abs:
        where = "is the input folder"
    elif in_abs in out_abs.parents:
        where = f"is inside the input folder {str(in_dir)!r}"
    elif out_abs in in_abs.parents:
        where = f"contains the input folder {str(in_dir)!r}"
        hint = f"give an output folder that neither contains nor is inside {str(in_dir)!r}"
    else:  # through symbolic links
        where = f"holds files of the input folder {str(in_dir)!r}"
    n = len(excluded)
    names = [p.relative_to(in_dir).as_posix() for p in excluded[:3]]
    more = f", ... ({n - 3} more)" if n > 3 else ""
    what = f"file{'s' if n != 1 else ''} matching --glob {glob!r}" if glob is not None else f"audio file{'s' if n != 1 else ''}"
    reason = (
        f"the output folder {str(out_dir)!r} {where}, and files in the output folder are not read as inputs: "
        f"{n} {what} excluded ({', '.join(names)}{more})"
    )
    return reason, hint


def _folder_inputs(args: argparse.Namespace, in_dir: Path, out_dir: Path, fmt: str) -> Tuple[List[Tuple[str, Path, Path]], Dict[str, Any]]:
    listing = _corpus.list_folder(in_dir, out_dir, args.glob)
    if listing.excluded:  # files under OUT_DIR are (earlier) outputs, never inputs: say so
        reason, hint = _excluded_reason(in_dir, out_dir, listing.excluded, args.glob)
        if not listing.inputs:
            raise ParameterError(f"no input files: {reason}; {hint}")
        warnings.warn(f"{reason}; the other {len(listing.inputs)} are processed")
    if not listing.inputs:
        ignored = sum(listing.ignored.values())
        seen = f" ({ignored} other file{'s' if ignored != 1 else ''}: {_corpus.describe_counts(listing.ignored)})" if ignored else ""
        if args.glob is not None:
            raise ParameterError(f"no audio files in {str(in_dir)!r} match --glob {args.glob!r}{seen}; check the pattern (it is case-sensitive) or drop --glob")
        raise ParameterError(f"no audio files in {str(in_dir)!r}{seen}; audio files have extensions such as .wav, .flac, .ogg, .mp3")
    inputs = [(p.relative_to(in_dir).as_posix(), p, p.relative_to(in_dir).with_suffix("." + fmt)) for p in listing.inputs]
    info = {"source": "folder", "glob": args.glob, "found": dict(listing.found), "ignored": dict(listing.ignored), "excluded": len(listing.excluded)}
    return inputs, info


def _list_inputs(args: argparse.Namespace, list_path: Path, out_dir: Path, fmt: str) -> Tuple[List[Tuple[str, Path, Path]], Dict[str, Any]]:
    if args.glob is not None:
        raise ParameterError(f"--glob narrows a folder listing; {str(list_path)!r} is a list of files: drop --glob (or edit the list)")
    inputs = _corpus.list_inputs(list_path, fmt)
    out_abs = out_dir.resolve()
    inside = [name for name, src, _ in inputs if out_abs == src or out_abs in src.parents]
    if inside:
        raise ParameterError(f"the input list names {len(inside)} file(s) inside the output folder {str(out_dir)!r} (e.g. {inside[0]!r}); give an output folder elsewhere")
    found: Dict[str, int] = {}
    for _, src, _ in inputs:
        ext = src.suffix[1:].lower() or "(none)"
        found[ext] = found.get(ext, 0) + 1
    return inputs, {"source": "list", "list": os.path.abspath(list_path), "found": found, "ignored": {}}


def _summary(n: int, info: Dict[str, Any], where: str) -> str:
    found = _corpus.describe_counts(collections.Counter(info["found"]))
    line = f"supermel batch: {n} audio file{'s' if n != 1 else ''} {where} ({found})"
    ignored = sum(info.get("ignored", {}).values())
    if ignored:
        line += f"; {ignored} other file{'s' if ignored != 1 else ''} ignored ({_corpus.describe_counts(collections.Counter(info['ignored']))})"
    return line


# =========================================================================== the local engine
def _start_pool(args: argparse.Namespace, fmt: str, workers: int) -> _pool.WorkerPool:
    """The worker processes, started before the driver lists and plans so that their start-up
    (the fork server importing torch) overlaps that work (:class:`._pool.WorkerPool`)."""
    return _pool.WorkerPool(_mp_context(), workers, vars(args), fmt, float(args.min_duration))


#: What the fork server imports once, before forking the workers from it (each then starts
#: without importing torch again): nothing in it has started a thread yet, so forking it is safe.
#: ``_forkserver_guard`` makes the fork server die with the driver.
_PRELOAD = ["supermel.cli._forkserver_guard", "torch", "supermel.functional", "supermel.cli._corpus", "supermel.cli._worker",
            "supermel.cli._pipeline", "supermel.cli._pool"]


def _mp_context() -> Any:
    """forkserver where there is one (a process using torch must not fork), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # effective when this process starts its fork server
    return ctx


def _tasks(units: List[Dict[str, Any]], workers: int) -> List[List[Dict[str, Any]]]:
    """Units grouped into tasks: a few files each (fewer messages), one shard each."""
    if units and units[0]["kind"] == "shard":
        return [[u] for u in units]
    size = max(1, min(16, math.ceil(len(units) / (workers * 8)))) if units else 1
    return [units[k : k + size] for k in range(0, len(units), size)]


def _run_local(
    args: argparse.Namespace, pipeline: Optional[_Pipeline], units: List[Dict[str, Any]], fmt: str, workers: int, on_rows: Callable[[Rows], None],
    pool: Optional[_pool.WorkerPool] = None, stopping: Callable[[], bool] = lambda: False,
) -> Dict[str, Any]:
    """Run ``units`` here: in this process (one worker) or in the worker processes of ``pool``.

    ``stopping()`` true (a full disk): no new unit is started. Ctrl-C: the same, and the
    :class:`KeyboardInterrupt` is raised again once the running units are finished.
    """
    tasks_list = _tasks(units, workers)
    info: Dict[str, Any] = {"engine": "local", "workers": workers, "batch_size": max((len(t) for t in tasks_list), default=0)}
    t0 = time.perf_counter()
    report = on_rows

    def on_rows(rows: Rows) -> None:  # noqa: F811  (the same, timing the first result)
        info.setdefault("first_result_s", round(time.perf_counter() - t0, 3))
        report(rows)

    if pool is None:
        assert pipeline is not None, "one worker runs in this process, on the driver's pipeline"
        before = _worker.set_torch_threads(1)
        try:
            worker = _worker.Worker.__new__(_worker.Worker)
            worker.pipeline, worker.fmt, worker.min_duration, worker.fsync = pipeline, fmt, float(args.min_duration), bool(args.fsync)
            for task in tasks_list:  # a few files at a time (outputs synced together with --fsync)
                if stopping():
                    break
                worker.run(task, on_rows=on_rows, stop=stopping)
        finally:
            _worker.set_torch_threads(before)
    else:
        info.update(pool.run(tasks_list, on_rows, stopping))
    info["run_s"] = round(time.perf_counter() - t0, 3)
    return info


# =========================================================================== the command
def _check_args(args: argparse.Namespace) -> None:
    if args.min_duration < 0:
        raise ParameterError(f"--min-duration {args.min_duration} must be >= 0")
    if args.address is not None and args.engine != "ray":
        raise ParameterError(f"--address {args.address} joins a Ray cluster: add --engine ray")
    if args.shard_size is not None and args.format == "npy":
        raise ParameterError("--shard-size writes .npz shards: drop --format npy (or --shard-size for one .npy per input)")
    if args.engine == "ray" and args.device.startswith("cuda:"):
        raise ParameterError(f"--device {args.device}: Ray gives each actor its own GPU; use --device cuda with --engine ray")


def _checked_parameters(args: argparse.Namespace, pool: Optional[_pool.WorkerPool]) -> Tuple[Optional[_Pipeline], Dict[str, Any]]:
    """Check the options before any file is read: ``(pipeline built here or None, the parameters)``.

    With a pool of workers, the first worker checks them (it builds the pipeline anyway) and this
    process never imports torch: that import would otherwise delay the start by a second or more.
    """
    if pool is not None:
        try:
            status, value = pool.parameters()
        except Exception:  # the pool itself failed to start: check here, then let the engine report it
            status, value = "failed", ""
        if status == "ok":
            return None, value
        if status == "error":
            raise ParameterError(value)
    pipeline = _validation_pipeline(args)
    return pipeline, pipeline.describe()


def _validation_pipeline(args: argparse.Namespace) -> _Pipeline:
    """The pipeline built here to check the options before any file is read (Ray: on CPU, since
    the GPUs are the cluster's, checked by the engine)."""
    if args.engine == "ray" and args.device != "cpu":
        local = argparse.Namespace(**vars(args))
        local.device = "cpu"
        pipeline = _Pipeline(local)
        pipeline.device = args.device
        return pipeline
    return _Pipeline(args)


def run(args: argparse.Namespace) -> int:
    """Run ``supermel batch``; the exit status."""
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    kind = _path_kind(in_dir)
    is_list = kind == "file" and _corpus.is_list_file(in_dir)
    if kind == "missing":
        raise ParameterError(f"input {'list' if _corpus.is_list_file(in_dir) else 'directory'} {str(in_dir)!r} does not exist")
    if kind == "file" and not is_list:
        raise ParameterError(
            f"input {str(in_dir)!r} is a file, not a folder: use `supermel compute` for single files, "
            f"or give a list of files ({', '.join(_corpus.LIST_SUFFIXES[:5])} ...)"
        )
    if kind == "other":
        raise ParameterError(f"input {str(in_dir)!r} is not a folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"output folder {str(out_dir)!r} is {'a file' if out_dir.is_file() else 'not a folder'}: give a folder for the outputs")
    _check_args(args)
    t_start = time.perf_counter()
    fmt = "npz" if args.shard_size is not None else (args.format or "npy")
    workers = args.workers or 1
    pool = _start_pool(args, fmt, workers) if args.engine == "local" and workers > 1 else None
    try:
        return _run(args, in_dir, out_dir, is_list, fmt, t_start, pool)
    except OSError as exc:
        if not _worker.is_disk_full(exc):
            raise
        print(f"supermel: error: the disk is full: {exc}; nothing more was written", file=sys.stderr)
        return DISK_FULL_STATUS
    finally:
        if pool is not None:
            pool.close()


#: The exit status of a batch stopped by a full disk (ENOSPC, or EDQUOT: over the quota).
DISK_FULL_STATUS = 3

#: Manifest statuses, in the order of the summary.
_STATUSES = ("done", "skipped", "failed", "not started")


def _run(
    args: argparse.Namespace, in_dir: Path, out_dir: Path, is_list: bool, fmt: str, t_start: float,
    pool: Optional[_pool.WorkerPool],
) -> int:
    if pool is None:  # checked here, before any listing (with a pool: below, while its workers start)
        pipeline, parameters = _checked_parameters(args, pool)
    _check_output(out_dir, "to output folder", {}, is_folder=True)  # it (or where it will be made) must take files
    if is_list:
        inputs, source = _list_inputs(args, in_dir, out_dir, fmt)
        where = f"listed in {str(in_dir)!r}"
    else:
        inputs, source = _folder_inputs(args, in_dir, out_dir, fmt)
        where = f"in {str(in_dir)!r}"

    entries, units = _corpus.plan(inputs, out_dir, overwrite=args.overwrite, shard_size=args.shard_size)
    if pool is not None:  # the workers check the options (the first one up answers); nothing is written before
        pipeline, parameters = _checked_parameters(args, pool)
        if pipeline is not None:  # no worker came up: run in this process
            pool.close()
            pool = None
    print(_summary(len(inputs), source, where), flush=True)
    wall_start_ns = time.time_ns()
    out_dir.mkdir(parents=True, exist_ok=True)
    swept = _corpus.sweep_temporary_files(out_dir)
    if swept:
        print(f"supermel batch: removed {len(swept)} temporary file{'s' if len(swept) != 1 else ''} left by an interrupted run", flush=True)

    progress = _Progress(len(entries), enabled=not args.quiet)
    progress.update(sum("status" in e for e in entries))
    state = {"disk_full": False}

    def on_rows(rows: Rows) -> None:
        seconds = 0.0
        for i, fields, messages in rows:
            entries[i].update(fields)
            if fields.get("status") == "done":
                seconds += float(fields.get("seconds", 0.0))
            elif fields.get("reason") == _worker.DISK_FULL:
                state["disk_full"] = True  # no new work: the running units finish
            for message in messages:
                warnings.warn(message)
        progress.update(len(rows), seconds)

    def stopping() -> bool:
        return state["disk_full"]

    interrupted = False
    engine: Dict[str, Any] = {"engine": args.engine}
    rounds = 0
    try:
        while units or not rounds:  # the engine runs once even with nothing to do (its manifest fields)
            rounds += 1
            if args.engine == "ray":
                from . import _ray_engine

                sample = Path(units[0]["src"] if units and units[0]["kind"] == "file" else units[0]["members"][0][1]) if units else None
                # the workers need the audio files, not the list: for a list, check the first file's folder
                seen_by_nodes = sample.parent if is_list and sample is not None else in_dir
                info = _ray_engine.run(args, units, fmt, on_rows, in_path=seen_by_nodes, sample=sample, out_dir=out_dir, progress=progress)
            else:
                info = _run_local(args, pipeline, units, fmt, args.workers or 1, on_rows, pool, stopping)
            if rounds == 1:
                engine = dict(info)
            else:  # a second round (inputs taking over a failed input's output name)
                for key in ("run_s", "workers_replaced", "units_retried"):
                    if key in info:
                        engine[key] = engine.get(key, 0) + info[key]
            units = [] if stopping() else _duplicate_units(entries, out_dir)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    _settle_duplicates(entries)
    swept_end = _corpus.sweep_temporary_files(out_dir)
    _reconcile(entries, out_dir, overwrite=bool(args.overwrite), since_ns=wall_start_ns, fsync=bool(args.fsync))
    why = "interrupted" if interrupted else (_worker.DISK_FULL if state["disk_full"] else "not run")
    for entry in entries:
        entry.pop("duplicate_of", None)
        if "status" not in entry:
            detail = {"interrupted": "not processed: the run was interrupted", _worker.DISK_FULL: "not processed: the run stopped because the disk is full"}
            entry.update(status="not started", reason=why, detail=detail.get(why, "not processed"))

    counts = {s: sum(e["status"] == s for e in entries) for s in _STATUSES}
    elapsed = time.perf_counter() - t_start
    hours = sum(float(e.get("seconds", 0.0)) for e in entries if e["status"] == "done") / 3600.0
    manifest = {
        "supermel_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "batch",
        "in_dir": os.path.abspath(in_dir),
        "out_dir": os.path.abspath(out_dir),
        "inputs": source,
        "glob": args.glob,
        "format": fmt,
        "shard_size": args.shard_size,
        "overwrite": bool(args.overwrite),
        "parameters": parameters,
        "engine": dict(engine, temporary_files_removed=len(swept) + len(swept_end)),
        "stopped": why if why != "not run" and counts["not started"] else None,
        "counts": counts,
        "hours_done": round(hours, 6),
        "elapsed_s": round(elapsed, 3),
        "files": entries,
    }
    manifest_path, index_path = _corpus.manifest_paths(out_dir)
    written = True
    try:
        _write_json(manifest_path, _finite_json(manifest))
        if args.shard_size is not None:
            _write_json(index_path, _finite_json(_shard_index(entries, args.shard_size, parameters)))
    except OSError as exc:
        if not _worker.is_disk_full(exc):
            raise
        written = False
        state["disk_full"] = True
        print(f"supermel: error: cannot write the manifest {str(manifest_path)!r}: {exc}", file=sys.stderr)

    _print_summary(entries, counts, elapsed, hours, manifest_path if written else None, quiet=bool(args.quiet))
    if interrupted:
        raise KeyboardInterrupt
    if state["disk_full"]:
        print(f"supermel: error: stopped: the disk is full (no space left on device); free space and rerun to resume (exit status {DISK_FULL_STATUS})", file=sys.stderr)
        return DISK_FULL_STATUS
    return 1 if counts["failed"] else 0


def _print_summary(entries: List[Dict[str, Any]], counts: Dict[str, int], elapsed: float, hours: float, manifest_path: Optional[Path], *, quiet: bool) -> None:
    """One line of counts, then a line per reason for the files skipped and not started, and a
    line per failed file (with ``-q``: a line per reason)."""
    rate = f", {hours * 3600.0 / elapsed / 60.0:.2f} h of audio/min" if counts["done"] and elapsed > 0 else ""
    where = f"manifest {manifest_path}" if manifest_path is not None else "no manifest (it could not be written)"
    not_started = f", {counts['not started']} not started" if counts["not started"] else ""
    print(
        f"supermel batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed{not_started} "
        f"of {len(entries)} files in {elapsed:.1f} s{rate}; {where}"
    )
    by_reason: Dict[Tuple[str, str], int] = collections.Counter((e["status"], e.get("reason", "")) for e in entries if e["status"] != "done")
    for (status, reason), n in sorted(by_reason.items()):
        if status == "skipped":
            print(f"  {n:,} skipped: {reason}")
    if quiet:
        for (status, reason), n in sorted(by_reason.items()):
            if status == "failed":
                print(f"  {n:,} failed: {reason} (listed in the manifest)")
    else:
        for entry in entries:
            if entry["status"] == "failed":
                print(f"  {entry['status']:<8} {entry['input']}: {entry['reason']} ({entry['detail']})")
    for (status, reason), n in sorted(by_reason.items()):
        if status == "not started":
            print(f"  {n:,} not started ({reason}): listed in the manifest")


# =========================================================================== two inputs, one output name
def _duplicate_units(entries: List[Dict[str, Any]], out_dir: Path) -> List[Dict[str, Any]]:
    """Work units for the inputs waiting on an input with the same output name that failed: the
    first such input takes the output over (one per output name and round)."""
    units: List[Dict[str, Any]] = []
    taken: Dict[str, int] = {}
    for i, entry in enumerate(entries):
        if "duplicate_of" not in entry or "status" in entry:
            continue
        owner = entries[entry["duplicate_of"]]
        if not _not_produced(owner):
            continue
        name = entry["output"]
        if name in taken:
            entry["duplicate_of"] = taken[name]  # waits on the one that takes over now
            continue
        taken[name] = i
        entry["replaces"] = owner["input"]
        units.append({"kind": "file", "i": i, "src": entry.pop("src"), "out": os.fspath(out_dir / name)})
    return units


def _not_produced(owner: Dict[str, Any]) -> bool:
    """Whether ``owner`` is settled and its output not produced (failed, or skipped as too short)."""
    if owner.get("reason") == "duplicate output":
        return False
    return owner.get("status") == "failed" or (owner.get("status") == "skipped" and owner.get("reason") != "output exists")


def _settle_duplicates(entries: List[Dict[str, Any]]) -> None:
    """The inputs whose output name another input's output took: ``duplicate output`` once that
    output is produced; otherwise (the run stopped) they stay not started."""
    for entry in entries:
        if "duplicate_of" not in entry or "status" in entry:
            continue
        entry.pop("src", None)
        owner = entries[entry["duplicate_of"]]
        produced = owner.get("status") == "done" or owner.get("reason") == "output exists"
        if produced:
            entry.update(status="failed", reason="duplicate output", detail=f"{owner['input']} is also written to {entry['output']}, and was")


# =========================================================================== the manifest matches the disk
def _reconcile(entries: List[Dict[str, Any]], out_dir: Path, *, overwrite: bool, since_ns: int, fsync: bool) -> None:
    """Outputs this run wrote whose report never arrived (a worker killed between writing an
    output and reporting it, then again on the retry; Ctrl-C): recorded as done, from the file."""
    import numpy as np

    checked: Dict[str, Optional[List[Dict[str, Any]]]] = {}
    for entry in entries:
        if entry.get("status") in ("done", "skipped") or "duplicate_of" in entry or "output" not in entry:
            continue
        if entry.get("status") == "failed" and entry.get("reason") != "worker died":
            continue  # its worker said why: nothing was written
        path = out_dir / entry["output"]
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_size == 0 or (overwrite and st.st_mtime_ns < since_ns):
            continue  # not this run's
        if fsync:
            _corpus._sync([os.fspath(path)])
        note = "its worker process ended after writing the output, before reporting it"
        try:
            if "key" in entry:  # a member of a shard
                if entry["output"] not in checked:
                    checked[entry["output"]] = _corpus._shard_members(path)
                stored = {m.get("key"): m for m in checked[entry["output"]] or []}
                old = stored.get(entry["key"])
                if old is None:
                    continue
                for key in ("status", "reason", "detail"):
                    entry.pop(key, None)
                entry.update({k: v for k, v in old.items() if k != "key"})
                if old.get("status") == "done":
                    entry["note"] = note
                continue
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    shape, dtype = z["mel"].shape, z["mel"].dtype
            else:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                shape, dtype = arr.shape, arr.dtype
        except Exception:  # unreadable: not a finished output
            continue
        for key in ("status", "reason", "detail"):
            entry.pop(key, None)
        entry.update(status="done", shape=list(shape), dtype=str(dtype), note=note)


def _shard_index(entries: List[Dict[str, Any]], shard_size: int, parameters: Dict[str, Any]) -> Dict[str, Any]:
    """The shards and, for every input stored in one, its shard and key."""
    shards: Dict[str, List[str]] = {}
    files: Dict[str, Dict[str, Any]] = {}
    for e in entries:
        if "key" not in e or "output" not in e:
            continue
        stored = e["status"] == "done" or (e["status"] == "skipped" and e.get("reason") == "output exists")
        if stored:
            shards.setdefault(e["output"], []).append(e["key"])
            files[e["key"]] = {"shard": e["output"], "input": e["input"], **{k: e[k] for k in ("shape", "sr", "seconds") if k in e}}
    return {
        "supermel_version": __version__,
        "shard_size": shard_size,
        "parameters": parameters,
        "shards": [{"file": name, "keys": keys} for name, keys in sorted(shards.items())],
        "files": files,
    }
