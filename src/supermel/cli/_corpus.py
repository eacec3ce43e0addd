"""The corpus side of ``supermel batch``: which files are inputs and where each output goes, shared
by the local process pool and the Ray engine (the work on them: :mod:`supermel.cli._worker`).

Listing
    :func:`list_folder` walks a folder for every file soundfile can read (extensions compared
    case-insensitively, :func:`audio_extensions`) or for what ``--glob`` matches among them, and
    counts what it found and what it ignored, per extension. :func:`read_list` reads a manifest of
    inputs (a text, CSV/TSV or JSON-lines list of paths, optionally with output names), as
    lhotse and NeMo users have.
Planning
    :func:`plan` turns the inputs into manifest entries (an existing output is skipped, two inputs
    writing one output are refused) and into *work units*: one output file each, or one ``.npz``
    shard of ``--shard-size`` inputs. Units are plain dicts (JSON-friendly: they travel to Ray).
Work
    :class:`supermel.cli._worker.Worker` decodes, featurises and writes the units it is given;
    :func:`sweep_temporary_files` removes the temporary files of a run that was killed while writing.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import gzip
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Counter, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from .._errors import ParameterError
from ._common import MANIFEST_NAME

__all__ = [
    "SHARD_INDEX_NAME",
    "LIST_SUFFIXES",
    "audio_extensions",
    "is_list_file",
    "Listing",
    "list_folder",
    "describe_counts",
    "read_list",
    "list_inputs",
    "plan",
    "unit_size",
    "manifest_paths",
    "sweep_temporary_files",
    "shard_name",
]

#: File name of the index ``supermel batch --shard-size`` writes next to the manifest.
SHARD_INDEX_NAME = "supermel_shards.json"

#: Suffixes of an input list (a manifest of inputs) given instead of an input folder.
LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv", ".tsv", ".jsonl", ".ndjson", ".json")

#: libsndfile format -> the file extensions it is found under (``soundfile.available_formats()``
#: says which formats this libsndfile reads). RAW (header-less), MAT4/MAT5 (.mat), HTK, XI and SDS
#: are left out: files with those extensions are rarely audio a corpus means.
_FORMAT_EXTENSIONS: Dict[str, Tuple[str, ...]] = {
    "WAV": ("wav", "wave"),
    "WAVEX": ("wav",),
    "FLAC": ("flac",),
    "OGG": ("ogg", "oga", "opus"),
    "MP3": ("mp3",),
    "AIFF": ("aif", "aiff", "aifc"),
    "AU": ("au", "snd"),
    "CAF": ("caf",),
    "W64": ("w64",),
    "RF64": ("rf64",),
    "NIST": ("sph", "nist"),
    "VOC": ("voc",),
    "SD2": ("sd2",),
    "AVR": ("avr",),
    "PAF": ("paf",),
    "PVF": ("pvf",),
    "WVE": ("wve",),
    "SVX": ("8svx", "16svx"),
}

#: Temporary files of :func:`supermel.cli._common._atomic_open` (``.NAME.XXXXXXXX.tmp``) and of the
#: writability probe, as a killed run leaves them.
_TEMP_RE = re.compile(r"^\..+\.(npy|npz|json)\.[A-Za-z0-9_]{8}\.tmp$|^\.supermel-probe-[A-Za-z0-9_]{8}$")

#: The numbers in :func:`supermel.audio.load`'s truncation warning.
_SHORTFALL = re.compile(r"header declares (\d+) frames but the file holds (\d+)")

#: Keys naming the audio file in a JSON-lines or CSV list (NeMo: ``audio_filepath``), and the output.
_PATH_KEYS = ("audio_filepath", "path", "audio_path", "audio", "file", "filename", "wav", "source")
_OUTPUT_KEYS = ("output", "out", "output_path")


def audio_extensions() -> Set[str]:
    """Lower-case extensions (no dot) of the audio files a folder listing takes.

    Every format soundfile's libsndfile reads, or only ``wav`` without soundfile
    (scipy reads WAV files).
    """
    try:
        import soundfile
    except ImportError:
        return {"wav"}
    exts: Set[str] = set()
    for fmt in soundfile.available_formats():
        exts.update(_FORMAT_EXTENSIONS.get(fmt, ()))
    return exts or {"wav"}


def _ext(path: Path) -> str:
    return path.suffix[1:].lower() if path.suffix else "(none)"


def is_list_file(path: Path) -> bool:
    """Whether ``path`` names an input list (by its suffix, ``.gz`` allowed after it)."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in LIST_SUFFIXES


# =========================================================================== listing a folder
class Listing:
    """What a folder listing found.

    Attributes
    ----------
    inputs : list of Path
        The audio files to process, sorted.
    found : collections.Counter
        Extension -> number of ``inputs``.
    ignored : collections.Counter
        Extension -> files that were looked at and left out (not audio; with ``--glob``, the
        non-audio files it matched).
    excluded : list of Path
        Audio files inside the output folder: earlier outputs' neighbours, never inputs.
    """

    def __init__(self) -> None:
        self.inputs: List[Path] = []
        self.found: Counter[str] = collections.Counter()
        self.ignored: Counter[str] = collections.Counter()
        self.excluded: List[Path] = []


def _walk_files(root: Path) -> Iterator[Tuple[Path, bool]]:
    """Every regular file under ``root`` (following links to folders, each folder once), with
    whether the file itself is a symbolic link."""
    seen: Set[Tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.is_file():
                    yield Path(entry.path), entry.is_symlink()
            except OSError:
                continue


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def list_folder(in_dir: Path, out_dir: Path, glob: Optional[str]) -> Listing:
    """The audio files under ``in_dir`` (or those ``glob`` matches), outputs excluded.

    Parameters
    ----------
    in_dir, out_dir : Path
        The input folder and the output folder (files inside ``out_dir`` are never inputs).
    glob : str or None
        ``None``: every file with an audio extension (:func:`audio_extensions`), compared
        case-insensitively. Otherwise a pattern relative to ``in_dir`` (``Path.glob``, case-sensitive
        as the shell's), narrowed to the audio files it matches.

    Returns
    -------
    Listing

    Raises
    ------
    ParameterError
        When ``glob`` is not a valid pattern.
    """
    exts = audio_extensions()
    out_abs = out_dir.resolve()
    listing = Listing()
    if glob is None:
        candidates = ((p, link) for p, link in _walk_files(in_dir))
    else:
        try:
            matched = [p for p in in_dir.glob(glob) if p.is_file()]
        except (ValueError, NotImplementedError) as exc:
            raise ParameterError(f"--glob {glob!r}: {exc}; give a pattern relative to the input folder, e.g. '**/*.flac'") from None
        candidates = ((p, p.is_symlink()) for p in matched)
    resolved_dirs: Dict[Path, bool] = {}
    for path, is_link in candidates:
        parent = path.parent
        if parent not in resolved_dirs:
            resolved_dirs[parent] = _inside(parent.resolve(), out_abs)
        in_out = resolved_dirs[parent] or (is_link and _inside(path.resolve(), out_abs))
        ext = _ext(path)
        if ext not in exts:
            if not in_out:
                listing.ignored[ext] += 1
            continue
        if in_out:
            listing.excluded.append(path)
        else:
            listing.inputs.append(path)
            listing.found[ext] += 1
    listing.inputs.sort()
    listing.excluded.sort()
    return listing


def describe_counts(counts: Counter[str]) -> str:
    """``"flac 3, wav 2"``: most common first."""
    return ", ".join(f"{ext} {n}" for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# =========================================================================== reading a list of inputs
def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8", newline="")  # type: ignore[return-value]


def _pick(obj: Dict[str, Any], keys: Sequence[str]) -> Optional[Any]:
    lower = {str(k).lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lower and lower[key] not in (None, ""):
            return lower[key]
    return None


def _json_entry(obj: Any, where: str) -> Tuple[str, Optional[str]]:
    """``(path, output or None)`` of one JSON-lines entry (NeMo, lhotse recordings/cuts, plain)."""
    if isinstance(obj, str):
        return obj, None
    if not isinstance(obj, dict):
        raise ParameterError(f"{where}: expected a JSON object or a string, got {type(obj).__name__}; write one object per line with a 'path' key")
    offset = obj.get("offset")
    if offset not in (None, 0, 0.0):
        raise ParameterError(f"{where}: segments (offset={offset}) are not supported: list whole files (cut the segments out first)")
    output = _pick(obj, _OUTPUT_KEYS)
    path = _pick(obj, _PATH_KEYS)
    recording = obj.get("recording") if isinstance(obj.get("recording"), dict) else obj
    sources = recording.get("sources") if isinstance(recording, dict) else None
    if path is None and isinstance(sources, list):  # lhotse: {"id", "sources": [{"type": "file", "source": ...}]}
        files = [s for s in sources if isinstance(s, dict) and s.get("type") == "file" and s.get("source")]
        if len(files) != 1:
            raise ParameterError(f"{where}: a lhotse recording needs exactly one source of type 'file' (found {len(files)})")
        path = files[0]["source"]
        if output is None and recording.get("id"):
            output = str(recording["id"])
    if path is None or not isinstance(path, str):
        keys = ", ".join(map(str, obj)) or "none"
        raise ParameterError(f"{where}: no audio path (keys: {keys}); name it 'audio_filepath' (NeMo), 'path' or 'audio'")
    return path, (None if output is None else str(output))


def read_list(path: Path) -> List[Tuple[str, Optional[str]]]:
    """The ``(audio path, output name or None)`` pairs of an input list, in its order.

    Parameters
    ----------
    path : Path
        ``.jsonl``/``.ndjson``/``.json``: one JSON object per line with the audio path under
        ``audio_filepath`` (NeMo), ``path``, ``audio`` or ``file``, or a lhotse recording
        (``sources``; its ``id`` names the output); optional ``output``. ``.csv``/``.tsv``: a header
        row naming those columns; without a header (the first row's first cell an audio file name:
        path, then output). A header naming no path column is refused. Anything else (``.txt``,
        ``.lst``): one path per line, an output name after a tab; blank lines and lines starting
        with ``#`` are skipped. Any of them may be gzipped (``.jsonl.gz``).

    Returns
    -------
    list of (str, str or None)
        Paths as written in the list (relative ones are relative to the list's folder).

    Raises
    ------
    ParameterError
        When the list cannot be read or an entry names no path; the message gives the line.
    """
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    rows: List[Tuple[str, Optional[str]]] = []
    try:
        with _open_text(path) as fh:
            if base.endswith((".jsonl", ".ndjson", ".json")):
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        raise ParameterError(f"{path}:{n}: not a JSON line ({exc}); write one JSON object per line") from None
                    rows.append(_json_entry(obj, f"{path}:{n}"))
            elif base.endswith((".csv", ".tsv")):
                reader = csv.reader(fh, delimiter="\t" if base.endswith(".tsv") else ",")
                table = [r for r in reader if r and any(c.strip() for c in r)]
                if table:
                    header = [c.strip().lower() for c in table[0]]
                    path_col = next((header.index(k) for k in _PATH_KEYS if k in header), None)
                    out_col = next((header.index(k) for k in _OUTPUT_KEYS if k in header), None)
                    body = table[1:] if path_col is not None else table
                    if path_col is None:
                        first = table[0][0].strip()
                        if _ext(Path(first)) not in audio_extensions():  # a header naming no path column
                            raise ParameterError(
                                f"{path}:1: no audio path column in the header ({', '.join(c.strip() for c in table[0])}); "
                                f"name the column one of {', '.join(_PATH_KEYS)} (and optionally {', '.join(_OUTPUT_KEYS)} for the output name), "
                                "or give a plain list of paths as .txt"
                            )
                        path_col, out_col = 0, (1 if len(table[0]) > 1 else None)  # no header: path, output
                    for n, r in enumerate(body, 2 if body is not table else 1):
                        if path_col >= len(r) or not r[path_col].strip():
                            raise ParameterError(f"{path}:{n}: no audio path in column {path_col + 1}")
                        out = r[out_col].strip() if out_col is not None and out_col < len(r) and r[out_col].strip() else None
                        rows.append((r[path_col].strip(), out))
            else:
                for line in fh:
                    text = line.rstrip("\r\n")
                    if not text.strip() or text.lstrip().startswith("#"):
                        continue
                    src, _, out = text.partition("\t")
                    rows.append((src.strip(), out.strip() or None))
    except OSError as exc:
        raise ParameterError(f"cannot read the input list {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ParameterError(f"the input list {str(path)!r} is not UTF-8 text ({exc.reason}); give a .txt, .csv or .jsonl list of paths") from None
    if not rows:
        raise ParameterError(f"the input list {str(path)!r} names no files; write one audio path per line")
    return rows


def _output_name(name: str, fmt: str, where: str) -> Path:
    """An output name from a list: relative, inside the output folder, with the format's suffix."""
    p = Path(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ParameterError(f"{where}: output name {name!r} must be a relative path inside the output folder (no '..', not absolute)")
    if p.suffix.lower() in (".npy", ".npz"):
        p = p.with_suffix("")
    return p.parent / f"{p.name}.{fmt}"


def list_inputs(list_path: Path, fmt: str) -> List[Tuple[str, Path, Path]]:
    """``(name in the list, audio path, output path relative to the output folder)`` of a list.

    Outputs are named by the list when it gives names, otherwise they mirror the audio paths
    relative to the list's folder (when every file lies under it) or to the files' common folder.
    """
    rows = read_list(list_path)
    base = list_path.resolve().parent
    srcs = [Path(os.path.normpath(base / os.path.expanduser(src))) for src, _ in rows]
    under = all(_inside(s, base) and s != base for s in srcs)
    root = base if under else Path(os.path.commonpath([str(s.parent) for s in srcs]))
    out: List[Tuple[str, Path, Path]] = []
    for n, ((name, given), src) in enumerate(zip(rows, srcs), 1):
        if given is not None:
            rel = _output_name(given, fmt, f"{list_path}: entry {n}")
        else:
            rel = src.relative_to(root).with_suffix("." + fmt)
        out.append((name, src, rel))
    return out


# =========================================================================== planning
def shard_name(k: int) -> str:
    """Path of shard ``k`` relative to the output folder."""
    return f"shards/shard-{k:06d}.npz"


def _shard_members(path: Path) -> Optional[List[Dict[str, Any]]]:
    """The member entries a finished shard records, or ``None`` when it is not a readable shard."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return list(json.loads(str(z["__supermel_files__"])))
    except Exception:  # a foreign or damaged file: recompute it
        return None


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _sync(paths: Sequence[str]) -> None:
    """``fsync`` files written without it, together: the first commits the filesystem's journal
    for all of them and the others find little left to do (one ``fsync`` right after each write
    costs milliseconds a file on many filesystems)."""
    for path in paths:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _existing_files(out_dir: Path) -> Set[str]:
    """Every file under ``out_dir`` (relative POSIX paths): one walk instead of a stat per output."""
    found: Set[str] = set()
    if out_dir.is_dir():
        for p, _ in _walk_files(out_dir):
            found.add(p.relative_to(out_dir).as_posix())
    return found


def plan(
    inputs: Sequence[Tuple[str, Path, Path]], out_dir: Path, *, overwrite: bool, shard_size: Optional[int]
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Manifest entries and work units for ``inputs``.

    Parameters
    ----------
    inputs : sequence of (name, source, output relative to ``out_dir``)
    out_dir : Path
    overwrite : bool
        Recompute outputs that exist.
    shard_size : int or None
        Group the inputs, in order, into ``.npz`` shards of this many (``None``: one output per input).

    Returns
    -------
    entries : list of dict
        One per input, in order: ``input``, ``output`` (and ``key`` in a shard), and ``status``,
        ``reason``, ``detail`` for those already settled (skipped or refused). One output file
        named by a second input too: the second gets ``duplicate_of`` (the first's index) and
        ``src`` instead of a unit (``supermel batch`` computes it only if the first fails); in a
        shard, keys must be unique: the second is refused (``duplicate output``).
    units : list of dict
        ``{"kind": "file", "i", "src", "out"}`` or ``{"kind": "shard", "out", "members": [[i, src, key], ...]}``
        with absolute paths.
    """
    existing = set() if overwrite else _existing_files(out_dir)
    entries: List[Dict[str, Any]] = []
    units: List[Dict[str, Any]] = []
    claimed: Dict[str, str] = {}
    claimed_at: Dict[str, int] = {}
    members: List[Tuple[int, str, str]] = []
    for name, src, rel in inputs:
        rel_s = rel.as_posix()
        entry: Dict[str, Any] = {"input": name}
        if shard_size is None:
            entry["output"] = rel_s
        else:
            entry["key"] = rel.with_suffix("").as_posix()
        if rel_s in claimed and shard_size is not None:
            entry.update(status="failed", reason="duplicate output", detail=f"{claimed[rel_s]} is also written to {rel_s}")
        elif rel_s in claimed:  # settled by the driver: a duplicate if the first's output is produced, else it takes over
            entry.update(duplicate_of=claimed_at[rel_s], src=os.fspath(src))
        elif shard_size is not None:
            members.append((len(entries), os.fspath(src), entry["key"]))
        elif rel_s in existing and _nonempty(out_dir / rel):  # an empty file (a power cut before its sync) is redone
            entry.update(status="skipped", reason="output exists", detail="use --overwrite to recompute")
        else:
            units.append({"kind": "file", "i": len(entries), "src": os.fspath(src), "out": os.fspath(out_dir / rel)})
        claimed.setdefault(rel_s, name)
        claimed_at.setdefault(rel_s, len(entries))
        entries.append(entry)
    if shard_size is not None:
        for k in range(0, len(members), shard_size):
            group = members[k : k + shard_size]
            name = shard_name(k // shard_size)
            for i, _, _ in group:
                entries[i]["output"] = name
            stored = _shard_members(out_dir / name) if name in existing else None
            if stored is not None and [m.get("key") for m in stored] == [key for _, _, key in group] and not any(m.get("status") == "failed" for m in stored):
                for (i, _, _), old in zip(group, stored):
                    kept = {k: v for k, v in old.items() if k in ("sr", "seconds", "shape", "dtype", "warning")}
                    if old.get("status") == "done":
                        entries[i].update(kept, status="skipped", reason="output exists", detail=f"in {name}; use --overwrite to recompute")
                    else:
                        entries[i].update(kept, status=old.get("status", "skipped"), reason=old.get("reason", ""), detail=old.get("detail", ""))
                continue
            units.append({"kind": "shard", "out": os.fspath(out_dir / name), "members": [list(m) for m in group]})
    return entries, units


def unit_size(unit: Dict[str, Any]) -> int:
    """How many inputs a work unit holds."""
    return len(unit["members"]) if unit["kind"] == "shard" else 1


# =========================================================================== temporary files
def sweep_temporary_files(out_dir: Path) -> List[Path]:
    """Remove the temporary files a killed run left under ``out_dir``; the paths removed.

    Only supermel's own (``.NAME.npy.XXXXXXXX.tmp`` and the like, and write probes) are touched.
    Two runs must not write into one output folder at the same time.
    """
    removed: List[Path] = []
    if not out_dir.is_dir():
        return removed
    for p, _ in _walk_files(out_dir):
        if _TEMP_RE.match(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


# =========================================================================== the work
def manifest_paths(out_dir: Path) -> Tuple[Path, Path]:
    """The manifest's and the shard index's paths."""
    return out_dir / MANIFEST_NAME, out_dir / SHARD_INDEX_NAME
