"""pytest plugin of the hosts' harness (``tests/hosts/hosts_harness.py``), loaded in the subprocess
that runs a host's own tests: ``-p supermel_hosts_plugin``.

Environment:

``SUPERMEL_HOSTS_HOST``  ``librosa``, ``whisper`` or ``transformers``: which host's functions.
``SUPERMEL_HOSTS_MODE``  ``original`` (the host's own code) or ``supermel`` (supermel's drop-ins
                         substituted for the host's functions and classes, everywhere they are
                         referenced in the host's modules, before the tests are collected).
``SUPERMEL_HOSTS_OUT``   a folder: ``outcomes.json`` (each test's outcome), ``calls.json`` (calls
                         of the substituted functions) and ``arrays/<test>.npz`` (the outputs of the
                         outermost feature calls of each test, compared across the two runs).
``SUPERMEL_HOSTS_BREAK`` ``1``: scale supermel's outputs by 1.001 (the harness's own test that
                         a difference is detected).

Both modes record through the same wrapper, and both seed numpy's and torch's global generators
(before collection and before each test), so the two runs see the same random inputs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest

HOST = os.environ.get("SUPERMEL_HOSTS_HOST", "")
MODE = os.environ.get("SUPERMEL_HOSTS_MODE", "original")
OUT = Path(os.environ.get("SUPERMEL_HOSTS_OUT", "."))
BREAK = os.environ.get("SUPERMEL_HOSTS_BREAK") == "1"
MAX_ARRAYS = 24  # per test
MAX_BYTES = 8 << 20  # per test

_state = threading.local()
_current: Dict[str, Any] = {"test": None, "arrays": [], "bytes": 0}
_calls: Dict[str, int] = {}
_outcomes: Dict[str, Dict[str, str]] = {}


def _seed() -> None:
    np.random.seed(20250117)
    try:
        import torch

        torch.manual_seed(20250117)
    except ImportError:  # pragma: no cover
        pass


def _as_array(out: Any) -> Any:
    if isinstance(out, np.ndarray):
        return out
    try:
        import torch

        if isinstance(out, torch.Tensor):
            return out.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(out, "keys") and hasattr(out, "__getitem__"):  # transformers' BatchFeature
        for key in ("input_features", "input_values"):
            if key in out.keys():
                return _as_array(out[key])
    if isinstance(out, (list, tuple)) and out and all(isinstance(a, np.ndarray) for a in out):
        return [a for a in out]
    return None


def _record(name: str, out: Any) -> None:
    arr = _as_array(out)
    arrays = arr if isinstance(arr, list) else [arr]
    for a in arrays:
        if a is None or _current["test"] is None or len(_current["arrays"]) >= MAX_ARRAYS:
            continue
        a = np.asarray(a)
        if a.dtype.kind not in "fc" or _current["bytes"] + a.nbytes > MAX_BYTES:
            continue
        _current["arrays"].append((name, a.copy()))
        _current["bytes"] += a.nbytes


def recording(name: str, fn: Callable[..., Any], *, ours: bool, record: bool = True) -> Callable[..., Any]:
    """``fn`` recording its outputs when it is the outermost recorded call (nested calls differ by host).

    ``ours``: count the call (and scale the output under ``SUPERMEL_HOSTS_BREAK``); ``record=False``:
    count only (a twin's inner method, which has no recording counterpart in the original run).
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_state, "depth", 0)
        _state.depth = depth + 1
        try:
            out = fn(*args, **kwargs)
        finally:
            _state.depth = depth
        if ours:
            _calls[name] = _calls.get(name, 0) + 1
            if BREAK and isinstance(out, np.ndarray) and out.dtype.kind == "f":
                out = out * out.dtype.type(1.001)
        if depth == 0 and record:
            _record(name, out)
        return out

    wrapper.__name__ = getattr(fn, "__name__", name)
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def replace_everywhere(prefix: str, original: Any, replacement: Any) -> int:
    """Rebind every module attribute of the host (modules named ``prefix*``) that is ``original``."""
    count = 0
    for modname, mod in list(sys.modules.items()):
        if mod is None or not (modname == prefix or modname.startswith(prefix + ".")):
            continue
        try:
            items = list(vars(mod).items())
        except TypeError:  # pragma: no cover
            continue
        for attr, value in items:
            if value is original:
                setattr(mod, attr, replacement)
                count += 1
    return count


# --------------------------------------------------------------------------- per host
def _librosa() -> None:
    import librosa
    import librosa.feature
    import librosa.filters

    import supermel

    pairs = [
        (librosa.feature, "melspectrogram", supermel.melspectrogram),
        (librosa.feature, "mfcc", supermel.mfcc),
        (librosa.filters, "mel", supermel.mel_filters),
    ]
    for mod, attr, ours in pairs:
        original = getattr(mod, attr)
        fn = ours if MODE == "supermel" else original
        wrapped = recording(f"librosa.{attr}", fn, ours=MODE == "supermel")
        # the public access points only: librosa's internal calls keep their own functions in the
        # original run; in the supermel run the tests' calls (and librosa's calls through these
        # attributes, e.g. filters.mel inside mel_to_stft) reach supermel
        setattr(mod, attr, wrapped)


_WHISPER_CACHE: Dict[Any, Any] = {}


def supermel_log_mel_spectrogram(audio: Any, n_mels: int = 80, padding: int = 0, device: Any = None) -> Any:
    """openai-whisper's ``log_mel_spectrogram`` computed by supermel (path, array or tensor in; tensor out)."""
    import torch
    import whisper.audio

    import supermel

    if isinstance(audio, str):
        audio = whisper.audio.load_audio(audio)  # the host's loader (ffmpeg)
    if not torch.is_tensor(audio):
        audio = torch.from_numpy(np.asarray(audio))
    if device is not None:
        audio = audio.to(device)
    key = (int(n_mels), int(padding), str(audio.device))
    fe = _WHISPER_CACHE.get(key)
    if fe is None:  # openai's floor is the maximum over everything passed in one call
        fe = supermel.frontend("whisper-80", n_mels=int(n_mels), padding=int(padding), max_scope="batch", device=audio.device)
        _WHISPER_CACHE[key] = fe
    return fe(audio)


def _whisper() -> None:
    import whisper
    import whisper.audio

    original = whisper.audio.log_mel_spectrogram
    fn = supermel_log_mel_spectrogram if MODE == "supermel" else original
    wrapped = recording("whisper.log_mel_spectrogram", fn, ours=MODE == "supermel")
    replace_everywhere("whisper", original, wrapped)


def _transformers() -> None:
    import transformers

    from supermel.integrations import transformers as twins

    names = ["WhisperFeatureExtractor", "ASTFeatureExtractor", "SeamlessM4TFeatureExtractor", "ParakeetFeatureExtractor"]
    for name in names:
        original = getattr(transformers, name)
        call = original.__call__
        # both runs record the extractors' outputs through the original class's __call__ (inherited by the twins)
        original.__call__ = recording(f"transformers.{name}", call, ours=False)
        if MODE == "supermel":
            twin = getattr(twins, name)
            twin_call = twin.__dict__.get("__call__")
            assert twin_call is None, f"{name}: supermel's twin overrides __call__"

            class Counted(twin):  # type: ignore[misc,valid-type]
                pass

            Counted.__name__ = Counted.__qualname__ = name
            Counted.__module__ = twin.__module__
            for method in ("_torch_extract_fbank_features", "_np_extract_fbank_features", "_extract_fbank_features"):
                if method in twin.__dict__:
                    setattr(Counted, method, recording(f"{name}.{method}", twin.__dict__[method], ours=True, record=False))
            replace_everywhere("transformers", original, Counted)


def pytest_configure(config: pytest.Config) -> None:
    _seed()
    {"librosa": _librosa, "whisper": _whisper, "transformers": _transformers}[HOST]()
    _seed()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _seed()
    _current.update(test=item.nodeid, arrays=[], bytes=0)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _current["arrays"]:
        folder = OUT / "arrays"
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[:180]
        np.savez(folder / f"{safe}.npz", **{f"{i:02d}_{n}": a for i, (n, a) in enumerate(_current["arrays"])})
        _outcomes.setdefault(item.nodeid, {})["arrays"] = f"{safe}.npz"
    _current.update(test=None, arrays=[], bytes=0)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {})
    if report.when == "call" or (report.when == "setup" and not report.passed) or (report.when == "teardown" and report.failed):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.when != "call" and report.failed:
            outcome = "error"
        else:
            outcome = report.outcome
        if "outcome" not in entry or outcome in ("failed", "error"):
            entry["outcome"] = outcome
            if outcome in ("failed", "error"):
                entry["message"] = str(report.longrepr)[-600:]


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _outcomes[report.nodeid or "<collection>"] = {"outcome": "collect-error", "message": str(report.longrepr)[-600:]}


def pytest_sessionfinish(session: pytest.Session) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "outcomes.json").write_text(json.dumps(_outcomes, indent=1, sort_keys=True))
    (OUT / "calls.json").write_text(json.dumps({"mode": MODE, "host": HOST, "calls": _calls}, indent=1))
