"""What the subcommands share: atomic output files, JSON and array writers, path
checks, argument types, and the lazy imports of optional modules (matplotlib,
:mod:`supermel.presets`, :mod:`supermel.bench`).

Imports nothing from the other ``supermel.cli`` modules.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

from .._errors import ParameterError
from .._version import __version__


#: File name of the manifest ``supermel batch`` writes into its output directory.
MANIFEST_NAME = "supermel_manifest.json"

_CLI_EXTRA = "pip install 'supermel[cli]'"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (os.umask is process-wide and not thread-safe to probe later).
_FILE_MODE = 0o666 & ~_umask()


# =========================================================================== output files and paths
@contextlib.contextmanager
def _atomic_open(path: Path, mode: str = "wb", *, fsync: bool = True) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success move it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched
    (a previous version, if any, survives). ``fsync=False`` leaves flushing the
    data to disk to the caller (``supermel batch`` syncs a task's outputs together).
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_TEMP_COUNTER = itertools.count()


def _create_temporary(path: Path) -> Tuple[int, str]:
    """A new file ``.NAME.XXXXXXXX.tmp`` next to ``path`` (its folder made if missing), open for writing.

    The 8-character token is this process's id mixed with a counter (about 0.1 ms a file less
    than ``tempfile.mkstemp``'s random name, folder check and ``chmod``, which a batch of
    many small outputs feels); ``O_EXCL`` refuses a name already taken, and then ``mkstemp`` decides.
    """
    token = f"{(os.getpid() * 1000003 + next(_TEMP_COUNTER)) & 0xFFFFFFFF:08x}"
    tmp = os.path.join(os.fspath(path.parent), f".{path.name}.{token}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(tmp, flags, 0o666), tmp  # the umask applies, as for any new file
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; give the usual permissions
    return fd, tmp


def _json_default(obj: Any) -> Any:
    """JSON encoding of numpy scalars/arrays, paths, tuples and other plain objects."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    mod = type(obj).__module__
    if mod.startswith("torch"):
        return str(obj)
    if callable(obj):
        return getattr(obj, "__name__", repr(obj))
    return repr(obj)


def _write_json(path: Path, data: Any) -> None:
    with _atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=_json_default, allow_nan=False)
        fh.write("\n")


def _path_kind(path: Path) -> str:
    """``'file'``, ``'dir'``, ``'missing'`` or ``'other'`` (a device, pipe, socket)."""
    if path.is_file():
        return "file"
    if path.is_dir():
        return "dir"
    return "other" if path.exists() else "missing"


def _check_input_file(path: Path, what: str, is_dir_hint: str) -> None:
    """A clear :class:`ParameterError` unless ``path`` is a regular file."""
    kind = _path_kind(path)
    if kind == "missing":
        raise ParameterError(f"{what} {str(path)!r} does not exist")
    if kind == "dir":
        raise ParameterError(f"{str(path)!r} is a directory, {is_dir_hint}")
    if kind == "other":
        raise ParameterError(f"{what} {str(path)!r} is not a regular file")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` or ``/`` at the latest)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_output(path: Path, what: str, probed: Dict[Path, str], *, is_folder: bool = False) -> None:
    """Fail before any work (nothing written) if ``path`` cannot be written as a file (or made as a folder).

    The nearest existing ancestor must be a writable directory: a regular file
    there (``-o notes.txt/out.npy``) or a read-only place is reported by name.
    Writability is probed with a temporary file (permission bits do not tell
    for root, ACLs or read-only mounts); ``probed`` caches folders already
    checked (folder -> error, ``""`` when fine).
    """
    if path.is_dir() and not is_folder:
        raise ParameterError(f"cannot write {what} {str(path)!r}: it is an existing directory")
    folder = _nearest_existing(path if is_folder else path.parent)
    if folder not in probed:
        probed[folder] = ""
        if not folder.is_dir():
            kind = "a regular file" if folder.is_file() else "a special file"
            probed[folder] = f"{str(folder)!r} is {kind}, not a folder"
        else:
            try:
                fd, tmp = tempfile.mkstemp(prefix=".supermel-probe-", dir=str(folder))
                os.close(fd)
                os.unlink(tmp)
            except OSError as exc:
                probed[folder] = f"cannot create files in {str(folder)!r} ({exc.strerror or exc})"
    if probed[folder]:
        raise ParameterError(f"cannot write {what} {str(path)!r}: {probed[folder]}")


def _is_dir_target(target: str) -> bool:
    """Whether an -o/--plot value names a folder (an existing one, or ending in a separator)."""
    return target.endswith(("/", os.sep)) or os.path.isdir(target)


def _write_array(path: Path, array: Any, fmt: str, meta: Dict[str, Any], *, fsync: bool = True) -> None:
    """Save ``array`` atomically as ``.npy`` (array only) or ``.npz`` (``mel`` plus metadata)."""
    import numpy as np

    with _atomic_open(path, fsync=fsync) as fh:
        if fmt == "npz":
            extra = {
                "sr": np.asarray(meta.get("sr") if meta.get("sr") is not None else -1),
                "hop_length": np.asarray(meta.get("hop_length") if meta.get("hop_length") is not None else -1),
                "db": np.asarray(bool(meta.get("db", False))),
                "params": np.asarray(json.dumps(meta, default=_json_default)),
            }
            np.savez(fh, mel=array, **extra)
        else:
            np.save(fh, array, allow_pickle=False)


def _finite_json(x: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_json(v) for v in x]
    return x


# =========================================================================== argument types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _norm(text: str) -> Any:
    """``--norm``: ``slaney``, ``none`` or a number p (including ``inf``), as librosa's ``norm``."""
    low = text.strip().lower()
    if low == "slaney":
        return "slaney"
    if low == "none":
        return "none"  # turned into None by _Pipeline (None here would mean "not given")
    try:
        return float(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use 'slaney', 'none' or a number p for the p-norm (e.g. 1, 2, inf)") from None


def _key_value(text: str) -> Tuple[str, Any]:
    """``--set KEY=VALUE``: VALUE parsed as JSON (true, 0.5, null, "x", [..]), else taken as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, e.g. pad_or_trim=true")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


def _device(text: str) -> str:
    low = text.strip().lower()
    if not (low == "cpu" or low == "cuda" or low.startswith("cuda:")):
        raise argparse.ArgumentTypeError(f"{text!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return low


# =========================================================================== optional modules
def _import_optional(module: str, what: str, extra: str) -> Any:
    """Import one of supermel's optional submodules, or raise a friendly :class:`ParameterError`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name == module:
            raise ParameterError(f"{module} ({what}) is not part of this installation of supermel {__version__}") from None
        if exc.name is None:  # an ImportError raised by hand, without the module's name: its own message says which
            raise ParameterError(f"{what} needs an optional module that is not installed ({exc}): pip install 'supermel[{extra}]'") from None
        raise ParameterError(f"{what} needs the optional module {exc.name!r}, which is not installed: pip install 'supermel[{extra}]'") from None


def _presets_module() -> Any:
    """``supermel.presets``, imported on first use, or a friendly error."""
    return _import_optional("supermel.presets", "the front-end presets", "cli")


def _presets_api(name: str) -> Callable[..., Any]:
    mod = _presets_module()
    fn = getattr(mod, name, None)
    if fn is None:
        import supermel

        fn = getattr(supermel, name, None)
    if fn is None:
        raise ParameterError(f"supermel.presets provides no {name}(); this installation's presets are incomplete")
    return fn


def _frontends() -> Dict[str, str]:
    return dict(_presets_api("frontends")())


def _config_dict(config: Any) -> Dict[str, Any]:
    if hasattr(config, "as_dict"):
        return dict(config.as_dict())
    raise ParameterError(f"cannot describe the preset configuration {config!r} (it has no as_dict())")


def _preset_config(name: str) -> Dict[str, Any]:
    """The default configuration of preset ``name`` (or an alias) as a plain dict, via ``as_dict``."""
    return _config_dict(_presets_api("preset_config")(name))


def _missing_extra(module: str, what: str) -> ParameterError:
    return ParameterError(f"{what} needs the optional module {module!r}, which is not installed: {_CLI_EXTRA}")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _missing_extra("matplotlib", "plotting") from None
