"""Shared fixtures and helpers for the supermel test suite.

Every reference value in the suite comes from librosa (or numpy/scipy); nothing
is compared with supermel's own earlier output and no numbers are copied in.

Helpers importable from the tests (``from conftest import ...``):

- :func:`rel_err`: relative Frobenius error ``||a - b|| / ||b||``.
- :func:`check_log`: log-domain features against a reference (loud cells, and linear error).
- :func:`assert_like_librosa`: same shape, same dtype and ``rel_err`` within the
  acceptance tolerance (:data:`TOL`: 2e-5 for float32, 1e-6 for float64).
- :func:`user_warnings`: the messages of the ``UserWarning``\\ s a call emits.
- :func:`require_program`: the one rule for tests that need a system program (skip with the
  install command, or fail when the environment variable ``CI`` is set).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import warnings
from typing import Any, Callable, Iterator, List, Optional, Tuple

try:  # the reference of the parity tests; tests/test_cuda.py must collect without it (a bare GPU image)
    import librosa
except ImportError:  # pragma: no cover
    librosa = None
import numpy as np
import pytest
import scipy
import torch

import supermel
from supermel import audio

#: One seed for the whole suite (white noise, random windows, random configs).
SEED = 20250117

#: Acceptance tolerances on the relative Frobenius error, by real dtype.
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-6}

#: Sample rates the speech clip is resampled to (the clip itself is 16 kHz).
SPEECH_RATES = (8000, 16000, 22050, 44100, 48000)


# --------------------------------------------------------------------------- pytest hooks
# The suite runs thousands of small tensor ops; on a shared, oversubscribed CPU,
# torch's intra-op thread pool makes each op 10-100x slower (spin-waiting
# workers). One thread unless SUPERMEL_TEST_THREADS says otherwise.
torch.set_num_threads(int(os.environ.get("SUPERMEL_TEST_THREADS", "1")))


def pytest_report_header(config: pytest.Config) -> List[str]:
    return [
        f"supermel {supermel.__version__}: torch {torch.__version__}, librosa {getattr(librosa, '__version__', 'absent')}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}",
        f"torch threads: {torch.get_num_threads()}, cuda available: {torch.cuda.is_available()}",
    ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: compiles with torch.compile (about 10-20 s each); runs by default, deselect with -m 'not slow'"
    )


# --------------------------------------------------------------------------- system programs
def in_ci() -> bool:
    """Whether the environment variable ``CI`` is set (to anything but ``""``, ``0``, ``false`` or ``no``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_program(*programs: str, install: str, why: str, which: Callable[[str], Optional[str]] = shutil.which) -> None:
    """The rule for every test that needs a system program (a browser, ``unshare``, ``git``).

    Returns when each of ``programs`` (a name looked up on ``PATH`` or an absolute path) is
    found by ``which``. Otherwise the test is skipped with the reason and the install
    command, so that the README's ``python -m pytest -q`` passes on a machine with nothing
    but Python; when ``CI`` is set (``.ci/run`` exports ``CI=1`` and installs the programs)
    the test fails instead, so CI never skips it silently.

    Parameters
    ----------
    *programs : str
        Program names or absolute paths.
    install : str
        The command that installs them, e.g. ``"apt-get install chromium"``.
    why : str
        What the test needs them for (part of the message).
    which : callable
        The lookup (``shutil.which``; tests of this rule pass their own).
    """
    missing = [p for p in programs if not which(p)]
    if missing:
        skip_unless_ci(f"{', '.join(missing)} not found ({why}); install with `{install}`")


def skip_unless_ci(msg: str) -> None:
    """Skip the test with ``msg``, or fail it when ``CI`` is set (what the machine lacks, CI must have)."""
    if in_ci():
        pytest.fail(f"{msg}. CI is set, so this test must run: the CI script provides it", pytrace=False)
    pytest.skip(f"{msg} (skipped; with CI set it fails)")


# --------------------------------------------------------------------------- helpers
def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device) or array as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_log(out, ref, *, log_base: float, power: float, loud_atol: float, lin_rel: float, what: str, loud_db: float = 60.0) -> None:
    """Log-domain features ``out`` vs a reference ``ref`` (both ``log_base`` logs of a magnitude/power).

    (a) cells within ``loud_db`` dB of the reference maximum: ``|out - ref| <= loud_atol``;
    (b) all cells: ``|base**out - base**ref| <= lin_rel * max(base**ref)``.
    """
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    db = (20.0 if power == 1 else 10.0) * math.log10(log_base) * ref
    loud = db >= db.max() - loud_db
    err_loud = np.abs(out - ref)[loud].max()
    assert err_loud <= loud_atol, f"{what}: log error {err_loud:.3g} > {loud_atol:g} within {loud_db:g} dB of the maximum"
    lin_out, lin_ref = log_base**out, log_base**ref
    err_lin = np.abs(lin_out - lin_ref).max() / lin_ref.max()
    assert err_lin <= lin_rel, f"{what}: linear error {err_lin:.3g} of the maximum > {lin_rel:g}"


def rel_err(a: Any, b: Any) -> float:
    """Relative Frobenius error ``||a - b|| / ||b||`` (``||a - b||`` when ``b`` is all zeros).

    Computed in float64 / complex128; NaNs make it NaN (so any ``<=`` check fails).
    """
    a = to_numpy(a)
    b = to_numpy(b)
    assert a.shape == b.shape, f"shape {a.shape} != reference shape {b.shape}"
    wide = np.complex128 if (np.iscomplexobj(a) or np.iscomplexobj(b)) else np.float64
    a = a.astype(wide).ravel()
    b = b.astype(wide).ravel()
    den = np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    return float(num / den) if den > 0 else float(num)


def real_dtype(x: Any) -> np.dtype:
    """The real dtype of an array (float32 for complex64, ...)."""
    return np.finfo(to_numpy(x).dtype).dtype


def assert_like_librosa(got: Any, want: np.ndarray, *, tol: Optional[float] = None, what: str = "") -> None:
    """``got`` (supermel) equals ``want`` (librosa): type, shape, dtype and values within tolerance."""
    assert isinstance(got, np.ndarray), f"{what}: expected a numpy array, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != librosa's {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != librosa's {want.dtype}"
    if tol is None:
        tol = TOL[real_dtype(want)]
    err = rel_err(got, want)
    assert err <= tol, f"{what}: relative Frobenius error {err:.3g} > {tol:.1g}"


def user_warnings(fn: Callable[[], Any]) -> Tuple[Any, List[str]]:
    """Call ``fn`` and return ``(result, sorted messages of the UserWarnings it emitted)``."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = fn()
    return out, sorted({str(w.message) for w in record if issubclass(w.category, UserWarning)})


def white_noise(rng: np.random.Generator, shape: Tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """Gaussian white noise, standard deviation 0.1."""
    return (0.1 * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def saved_figures(monkeypatch) -> List[Any]:
    """Every matplotlib figure saved during the test (to read its labels and axes)."""
    from matplotlib.figure import Figure

    figs: List[Any] = []
    real = Figure.savefig

    def record(self, *args, **kwargs):
        figs.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figs


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test (tests do not depend on each other's draws)."""
    return np.random.default_rng(SEED)


@pytest.fixture(scope="session")
def speech() -> Tuple[np.ndarray, int]:
    """The bundled speech clip: ``(y, 16000)``, float32, 12 s (shared: do not modify ``y``)."""
    y, sr = audio.example_audio()
    assert y.dtype == np.float32 and y.ndim == 1 and sr == 16000
    return y, sr


@pytest.fixture(scope="session")
def speech_at(speech) -> Callable[[int], np.ndarray]:
    """``speech_at(sr)``: the speech clip resampled to ``sr`` (soxr HQ), float32, cached (do not modify)."""
    y16, sr16 = speech

    @functools.lru_cache(maxsize=None)
    def at(sr: int) -> np.ndarray:
        if sr == sr16:
            return y16
        return audio.resample(y16, orig_sr=sr16, target_sr=sr)

    return at


@pytest.fixture(scope="session")
def make_signal(speech_at) -> Callable[..., np.ndarray]:
    """``make_signal(kind, sr, n, batch_shape=(), dtype=np.float32, seed=0)`` -> ``batch_shape + (n,)``.

    ``kind="noise"``: seeded white noise. ``kind="speech"``: excerpts of the
    speech clip at ``sr``, one per batch item, starting at different offsets
    (so batch items differ); the first starts 0.5 s in.
    """

    def make(kind: str, sr: int, n: int, batch_shape: Tuple[int, ...] = (), dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
        count = int(np.prod(batch_shape, dtype=int))
        if kind == "noise":
            return white_noise(np.random.default_rng(SEED + seed), tuple(batch_shape) + (n,), dtype)
        if kind != "speech":
            raise ValueError(kind)
        y = speech_at(sr)
        step = int(0.37 * sr)
        starts = [(sr // 2 + i * step) % max(1, len(y) - n) for i in range(count)]
        out = np.stack([y[s : s + n] for s in starts]).astype(dtype)
        assert out.shape[-1] == n, "speech clip too short for this excerpt"
        return out.reshape(tuple(batch_shape) + (n,))

    return make


# --------------------------------------------------------------------------- front-end fixtures (tests/frontends/)
# Here rather than in a tests/frontends/conftest.py: that one (no package around it)
# would take the module name ``conftest`` and ``from conftest import ...`` in the
# other test modules would find it instead of this file.
@pytest.fixture(scope="module")
def noise16() -> np.ndarray:
    """2.5 s of white noise (std 0.1): full band, no near-silent cells."""
    return (0.1 * np.random.default_rng(SEED).standard_normal(40000)).astype(np.float32)


@pytest.fixture
def torch_kernels(monkeypatch) -> Iterator[None]:
    """Streams run torch's kernels on the CPU (tests/frontends/_helpers.py docstring).

    Not autouse: requested by the streaming tests of tests/frontends/ (``pytestmark``
    of test_frontend_streaming.py, ``@pytest.mark.usefixtures("torch_kernels")`` elsewhere).
    """
    monkeypatch.setattr(supermel.streaming, "CPU_EXECUTOR", "torch")
    # and the offline calls they are compared with take the torch route too (the native core's
    # streams and pools are held to the offline call in tests/test_native.py, bit for bit)
    with supermel._native.use_native(False):
        yield
