"""The ``torch.nn.Module`` API: batches, dtypes, devices, state dicts, backends, ``torch.compile``.

References are librosa's outputs (or the same module applied item by item for
batch consistency, or the eager module for compiled graphs).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import librosa
import numpy as np
import pytest
import torch
from conftest import TOL, assert_like_librosa, rel_err, to_numpy
from torch.overrides import TorchFunctionMode

import supermel

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=CUDA)]
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

SPEC_KW = dict(n_fft=512, hop_length=160, win_length=400, pad_mode="reflect")
MEL_KW = dict(sr=16000, n_mels=40, fmin=20.0, fmax=7600.0, **SPEC_KW)
MFCC_KW = dict(n_mfcc=13, lifter=22, **MEL_KW)

KINDS = {
    "Spectrogram": (supermel.Spectrogram, SPEC_KW),
    "MelSpectrogram": (supermel.MelSpectrogram, MEL_KW),
    "MFCC": (supermel.MFCC, MFCC_KW),
}


def _librosa(kind: str, y: np.ndarray, kw: dict) -> np.ndarray:
    if kind == "Spectrogram":
        kw = dict(kw)
        power = kw.pop("power", 2.0)
        return np.abs(librosa.stft(y, **kw)) ** power
    if kind == "MelSpectrogram":
        return librosa.feature.melspectrogram(y=y, **kw)
    return librosa.feature.mfcc(y=y, **kw)


def _function(kind: str, y, kw: dict):
    if kind == "Spectrogram":
        return supermel.spectrogram(y=y, **kw)
    if kind == "MelSpectrogram":
        return supermel.melspectrogram(y=y, **kw)
    return supermel.mfcc(y=y, **kw)


kinds = pytest.mark.parametrize("kind", list(KINDS))


# =========================================================================== batches
@kinds
@pytest.mark.parametrize("backend", ["fft", "matmul"])
@pytest.mark.parametrize("seconds", [0.1, 1.5], ids=["short", "long"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_batch_equals_per_item(kind, backend, seconds, dtype, make_signal):
    """(2, 3, n) in one call == each (n,) alone (MFCC with top_db=None: top_db is whole-array in librosa 0.11)."""
    cls, kw = KINDS[kind]
    extra = dict(top_db=None) if kind == "MFCC" else {}
    module = cls(backend=backend, dtype=TORCH_DTYPE[dtype], **kw, **extra)
    y = make_signal("speech", 16000, int(seconds * 16000) + 11, (2, 3), dtype)
    batched = module(y)
    for idx in np.ndindex(2, 3):
        single = module(y[idx])
        assert batched[idx].shape == single.shape
        err = rel_err(batched[idx], single)
        assert err <= 1e-6, f"item {idx}: batched differs from single by {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_mfcc_batch_equals_librosa_batch(dtype, make_signal):
    """With top_db=80 (the default) a batch shares one floor, exactly as librosa 0.11 computes it."""
    y = make_signal("speech", 16000, 20000, (2, 3), dtype)
    y[0, 1] *= 1e-3
    got = supermel.MFCC(dtype=TORCH_DTYPE[dtype], **MFCC_KW)(y)
    assert_like_librosa(got, librosa.feature.mfcc(y=y, **MFCC_KW), what="MFCC batch")


# =========================================================================== module == function
@kinds
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
def test_module_equals_function(kind, as_tensor, make_signal):
    cls, kw = KINDS[kind]
    y = make_signal("speech", 16000, 24000, (2,), np.float32)
    if as_tensor:
        y = torch.from_numpy(y)
    got = cls(**kw)(y)
    want = _function(kind, y, kw)
    assert type(got) is type(want)
    np.testing.assert_array_equal(to_numpy(got), to_numpy(want))


# =========================================================================== types in, types out
@kinds
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_numpy_in_numpy_out(kind, dtype, make_signal):
    cls, kw = KINDS[kind]
    y = make_signal("noise", 16000, 8000, (2,), dtype)
    got = cls(dtype=TORCH_DTYPE[dtype], **kw)(y)
    assert_like_librosa(got, _librosa(kind, y, kw), what=f"{kind} numpy {dtype.__name__}")


@kinds
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
def test_tensor_in_tensor_out(kind, dtype, device, make_signal):
    cls, kw = KINDS[kind]
    y = make_signal("noise", 16000, 8000, (2,), dtype)
    got = cls(dtype=TORCH_DTYPE[dtype], device=device, **kw)(torch.from_numpy(y).to(device))
    assert isinstance(got, torch.Tensor)
    assert got.dtype == TORCH_DTYPE[dtype]
    assert got.device.type == device
    want = _librosa(kind, y, kw)
    assert tuple(got.shape) == want.shape
    assert rel_err(got, want) <= TOL[np.dtype(dtype)]


@kinds
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_input_dtype_decides_output_dtype(kind, dtype, make_signal):
    """A float32 module fed float64 returns float64 (and float32 for float32), like librosa."""
    cls, kw = KINDS[kind]
    module = cls(**kw)  # float32 buffers
    y = make_signal("noise", 16000, 8000, (), dtype)
    got = module(y)
    want = _librosa(kind, y, kw)
    assert got.dtype == want.dtype
    assert rel_err(got, want) <= TOL[np.dtype(np.float32)]
    got_t = module(torch.from_numpy(y))
    assert got_t.dtype == TORCH_DTYPE[dtype]


@kinds
def test_float16_is_computed_as_float32(kind, make_signal):
    """float16 audio is computed in float32, as librosa does (its output is float32 too)."""
    cls, kw = KINDS[kind]
    y = make_signal("speech", 16000, 8000, (2,), np.float16)
    want = _librosa(kind, y, kw)
    assert want.dtype == np.float32, "precondition: librosa returns float32 for float16 audio"
    module = cls(**kw)
    assert_like_librosa(module(y), want, what=f"{kind} float16 numpy")
    got_t = module(torch.from_numpy(y))
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float32
    assert rel_err(got_t, want) <= TOL[np.dtype(np.float32)]
    assert_like_librosa(_function(kind, y, kw), want, what=f"{kind} float16 function")


@pytest.mark.parametrize(
    "layout",
    ["strided", "fortran", "transposed-tensor", "negative-stride"],
)
def test_non_contiguous_input(layout, make_signal):
    base = make_signal("speech", 16000, 24000, (3,), np.float32)
    if layout == "strided":
        y = base[:, ::2]
    elif layout == "fortran":
        y = np.asfortranarray(base)
    elif layout == "negative-stride":
        y = base[::-1, ::-1]
    else:
        y = torch.from_numpy(np.ascontiguousarray(base.T)).T
    want = librosa.feature.melspectrogram(y=to_numpy(y), **MEL_KW)
    got = supermel.MelSpectrogram(**MEL_KW)(y)
    assert rel_err(got, want) <= TOL[np.dtype(np.float32)]
    assert rel_err(supermel.melspectrogram(y=y, **MEL_KW), want) <= TOL[np.dtype(np.float32)]


def test_read_only_numpy_input_is_accepted_silently():
    """Read-only arrays (np.frombuffer, memory maps) work like librosa: no warning, same values.

    Run in a fresh interpreter: torch warns about non-writable arrays only once per process.
    """
    code = textwrap.dedent(
        """
        import warnings, numpy as np, supermel
        y = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
        y.setflags(write=False)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            supermel.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=128, n_mels=40)
            supermel.MelSpectrogram(sr=16000, n_fft=512, hop_length=128, n_mels=40)(y)
        for w in record:
            print("WARNING:", w.category.__name__, w.message)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "WARNING" not in out.stdout, out.stdout


# =========================================================================== dtype and device moves
@kinds
@pytest.mark.parametrize("backend", ["fft", "matmul"])
def test_double_meets_float64_tolerance(kind, backend, make_signal):
    cls, kw = KINDS[kind]
    module = cls(backend=backend, **kw).double()
    for name, buf in module.named_buffers():
        assert buf.dtype == torch.float64, f"buffer {name} is {buf.dtype} after .double()"
    y = make_signal("speech", 16000, 16000, (2,), np.float64)
    assert_like_librosa(module(y), _librosa(kind, y, kw), what=f"{kind}.double()")


@kinds
@pytest.mark.parametrize("device", DEVICES)
def test_to_device(kind, device, make_signal):
    cls, kw = KINDS[kind]
    module = cls(**kw)
    moved = module.to(device)
    assert moved is module
    for name, buf in module.named_buffers():
        assert buf.device.type == device, f"buffer {name} stayed on {buf.device}"
    y = make_signal("speech", 16000, 16000, (2,), np.float32)
    got = module(torch.from_numpy(y).to(device))
    assert got.device.type == device
    assert rel_err(got, _librosa(kind, y, kw)) <= TOL[np.dtype(np.float32)]


@kinds
@pytest.mark.parametrize("device", DEVICES)
def test_numpy_in_numpy_out_on_device(kind, device, make_signal):
    """A module on any device takes numpy audio and gives numpy back (modules.py's documented contract)."""
    cls, kw = KINDS[kind]
    y = make_signal("speech", 16000, 16000, (2,), np.float32)
    got = cls(device=device, **kw)(y)
    assert_like_librosa(got, _librosa(kind, y, kw), what=f"{kind} on {device}, numpy in")


@pytest.mark.parametrize("device", DEVICES)
def test_functions_keep_the_device(device, make_signal):
    y = make_signal("speech", 16000, 16000, (2,), np.float32)
    t = torch.from_numpy(y).to(device)
    checks = {
        "stft": (supermel.stft(t, n_fft=512, hop_length=128), librosa.stft(y, n_fft=512, hop_length=128)),
        "spectrogram": (supermel.spectrogram(y=t, **SPEC_KW), _librosa("Spectrogram", y, SPEC_KW)),
        "melspectrogram": (supermel.melspectrogram(y=t, **MEL_KW), _librosa("MelSpectrogram", y, MEL_KW)),
        "mfcc": (supermel.mfcc(y=t, **MFCC_KW), _librosa("MFCC", y, MFCC_KW)),
    }
    mel = librosa.feature.melspectrogram(y=y, **MEL_KW)
    mel_t = torch.from_numpy(mel).to(device)
    checks["power_to_db"] = (supermel.power_to_db(mel_t, ref=np.max), librosa.power_to_db(mel, ref=np.max))
    checks["amplitude_to_db"] = (supermel.amplitude_to_db(mel_t, top_db=None), librosa.amplitude_to_db(mel, top_db=None))
    checks["melspectrogram(S=)"] = (
        supermel.melspectrogram(S=torch.from_numpy(np.abs(librosa.stft(y, n_fft=512)) ** 2).to(device), sr=16000, n_fft=512),
        librosa.feature.melspectrogram(S=np.abs(librosa.stft(y, n_fft=512)) ** 2, sr=16000, n_fft=512),
    )
    for name, (got, want) in checks.items():
        assert isinstance(got, torch.Tensor) and got.device.type == device, name
        assert rel_err(got, want) <= TOL[np.dtype(np.float32)], name


# =========================================================================== state dict
def test_state_dict_names_and_values():
    module = supermel.MelSpectrogram(**MEL_KW)
    sd = module.state_dict()
    assert "spectrogram.window" in sd and "mel_scale.fb" in sd
    win = librosa.util.pad_center(librosa.filters.get_window("hann", 400, fftbins=True), size=512)
    np.testing.assert_allclose(sd["spectrogram.window"].numpy(), win, rtol=1e-7, atol=1e-8)
    fb = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=20.0, fmax=7600.0)
    np.testing.assert_array_equal(sd["mel_scale.fb"].numpy(), fb)
    assert not any(k.startswith("mel_scale._block") for k in sd), "derived buffers must not be saved"


@pytest.mark.parametrize("seconds", [0.1, 2.0], ids=["short", "long"])
def test_load_state_dict_replaces_the_filterbank(seconds, make_signal):
    """Loading a checkpoint's window and filterbank changes the output to the checkpoint's."""
    source_kw = dict(MEL_KW, fmin=300.0, fmax=5000.0, window="hamming")
    source = supermel.MelSpectrogram(**source_kw)
    target = supermel.MelSpectrogram(**MEL_KW)
    target.load_state_dict(source.state_dict())
    y = make_signal("speech", 16000, int(seconds * 16000), (2,), np.float32)
    want = librosa.feature.melspectrogram(y=y, **source_kw)
    assert rel_err(target(y), want) <= TOL[np.dtype(np.float32)]
    np.testing.assert_array_equal(target(y), source(y))


# =========================================================================== backends
BACKEND_CASES = [
    pytest.param(dict(sr=16000, n_fft=512, hop_length=128, n_mels=64), id="base"),
    pytest.param(dict(sr=16000, n_fft=255, win_length=200, hop_length=300, n_mels=40, pad_mode="reflect"), id="odd-short-window-large-hop"),
    pytest.param(dict(sr=22050, n_fft=1000, hop_length=256, window=("kaiser", 8.0), power=1.5, htk=True, norm=None), id="kaiser-power1.5-htk"),
    pytest.param(dict(sr=8000, n_fft=256, hop_length=100, center=False, power=1.0, n_mels=32, window="blackman"), id="uncentered-magnitude"),
]


@pytest.mark.parametrize("kw", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", ["speech", "noise"])
def test_matmul_backend_equals_fft_and_librosa(kw, dtype, kind, make_signal):
    y = make_signal(kind, kw["sr"], int(0.9 * kw["sr"]), (2,), dtype)
    want = librosa.feature.melspectrogram(y=y, **kw)
    tol = TOL[np.dtype(dtype)]
    outs = {}
    for backend in ("fft", "matmul", "auto"):
        module = supermel.MelSpectrogram(backend=backend, dtype=TORCH_DTYPE[dtype], **kw)
        outs[backend] = module(y)
        assert_like_librosa(outs[backend], want, what=f"backend={backend}")
    assert rel_err(outs["matmul"], outs["fft"]) <= tol
    spec_kw = {k: v for k, v in kw.items() if k in ("n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power")}
    spec = supermel.Spectrogram(backend="matmul", dtype=TORCH_DTYPE[dtype], **spec_kw)(y)
    assert_like_librosa(spec, _librosa("Spectrogram", y, spec_kw), what="Spectrogram matmul")


# =========================================================================== TF32: full float32 products
_FP32_GET = getattr(torch._C, "_get_fp32_precision_getter", None)  # torch >= 2.9: per-backend flags
_FP32_SET = getattr(torch._C, "_set_fp32_precision_setter", None)


def _precision_state():
    """torch's float32 matmul settings: the legacy summary (or "mixed") and the per-backend flags."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and per-backend APIs mixed
        legacy = "mixed"
    flags = () if _FP32_GET is None else (_FP32_GET("cuda", "matmul"), _FP32_GET("mkldnn", "matmul"))
    return (legacy,) + flags


def _full(state):
    return state[0] == "highest" and all(f in ("none", "ieee") for f in state[1:])


def _set_legacy_high():
    torch.set_float32_matmul_precision("high")


def _set_medium():
    torch.set_float32_matmul_precision("medium")


def _set_allow_tf32():
    torch.backends.cuda.matmul.allow_tf32 = True


def _set_new_api_tf32():
    if _FP32_SET is None:
        pytest.skip("this torch has no per-backend fp32_precision flags")
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # new API only: the legacy summary then refuses to answer


TF32_SETTINGS = {"legacy-high": _set_legacy_high, "medium": _set_medium, "allow_tf32": _set_allow_tf32, "new-api-tf32": _set_new_api_tf32}


@pytest.fixture(params=list(TF32_SETTINGS))
def tf32_setting(request):
    """A host program's reduced-precision setting for the test; torch's defaults restored after."""
    TF32_SETTINGS[request.param]()
    yield request.param
    torch.set_float32_matmul_precision("highest")
    if _FP32_SET is not None:
        _FP32_SET("cuda", "matmul", "none")
        _FP32_SET("mkldnn", "matmul", "none")


class _MatmulSpy(TorchFunctionMode):
    """Records torch's float32 matmul settings at every matrix product issued."""

    NAMES = {"matmul", "mm", "bmm", "__matmul__", "__rmatmul__", "addmm", "baddbmm", "einsum", "linear", "dot"}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.NAMES:
            self.seen.append((func.__name__, _precision_state()))
        return func(*args, **(kwargs or {}))


OFFLINE_CALLS = {
    "mel-fft-short": lambda y: supermel.MelSpectrogram(**MEL_KW)(y[:, :4000]),
    "mel-fft-long-blocked": lambda y: supermel.MelSpectrogram(**MEL_KW)(y),
    "mel-matmul": lambda y: supermel.MelSpectrogram(**MEL_KW, backend="matmul")(y),
    "spectrogram-matmul": lambda y: supermel.Spectrogram(**SPEC_KW, backend="matmul")(y),
    "mfcc": lambda y: supermel.MFCC(sr=16000, n_mfcc=13, **SPEC_KW)(y),
    "melspectrogram": lambda y: supermel.melspectrogram(y=y, **MEL_KW),
    "melscale": lambda y: supermel.MelScale(sr=16000, n_fft=SPEC_KW["n_fft"], n_mels=40)(torch.ones(2, 10, SPEC_KW["n_fft"] // 2 + 1)),
}


@pytest.mark.parametrize("call", list(OFFLINE_CALLS))
def test_products_run_in_full_precision_under_a_tf32_setting(call, tf32_setting, make_signal):
    """With a host program's TF32/bf16 matmul setting in force, every matrix product of the offline
    forward runs with full float32 precision selected, and the caller's setting is back after.
    (The torch route: the native CPU core issues no torch products and has no reduced precision.)"""
    before = _precision_state()
    assert not _full(before)
    y = torch.from_numpy(make_signal("speech", 16000, 16000 * 3, (2,)))
    with _MatmulSpy() as spy, supermel._native.use_native(False):
        OFFLINE_CALLS[call](y)
    assert spy.seen, "no matrix product seen"
    assert all(_full(p) for _, p in spy.seen), spy.seen
    assert _precision_state() == before


def test_precision_guard_is_reentrant_and_thread_safe(make_signal):
    """Threads computing at once under a "high" setting: all their products in full precision, the
    setting restored exactly once the last one leaves (the guard counts entries process-wide)."""
    import threading

    torch.set_float32_matmul_precision("high")
    try:
        before = _precision_state()
        y = torch.from_numpy(make_signal("noise", 16000, 16000, (2,)))
        module = supermel.MelSpectrogram(**MEL_KW, backend="matmul")
        seen, errors = [], []
        orig = supermel._core._TorchKernels.matmul

        def spy(a, b, out=None):
            seen.append(_precision_state())
            return orig(a, b, out)

        supermel._core._TorchKernels.matmul = staticmethod(spy)

        def work():
            try:
                for _ in range(20):
                    module(y[:, :2000])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        try:
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            supermel._core._TorchKernels.matmul = staticmethod(orig)
        assert not errors, errors
        assert len(seen) >= 80 and all(_full(p) for p in seen)
        assert _precision_state() == before
        with supermel._core.full_fp32_matmuls:
            with supermel._core.full_fp32_matmuls:
                assert _full(_precision_state())
            assert _full(_precision_state())
        assert _precision_state() == before
    finally:
        torch.set_float32_matmul_precision("highest")
        if _FP32_SET is not None:
            _FP32_SET("cuda", "matmul", "none")
            _FP32_SET("mkldnn", "matmul", "none")


def test_default_settings_are_only_read():
    """Under torch's default (full precision) the guard changes nothing."""
    calls = []
    orig = torch.set_float32_matmul_precision
    torch.set_float32_matmul_precision = lambda p: calls.append(p) or orig(p)
    try:
        supermel.MelSpectrogram(**MEL_KW, backend="matmul")(np.zeros(4000, np.float32))
    finally:
        torch.set_float32_matmul_precision = orig
    assert calls == []


# =========================================================================== the matrix-product DFT basis
def test_matmul_dft_of_an_fft_module():
    """An fft-route module gives the basis a backend="matmul" module holds (bit for bit), also on
    meta (from the window spec) and from a loaded window (the buffer's values)."""
    kw = dict(n_fft=400, hop_length=100, win_length=300, window="hann")
    fft = supermel.Spectrogram(**kw)
    mm = supermel.Spectrogram(**kw, backend="matmul")
    dft, span = fft.matmul_dft()
    assert span == mm.window_span and torch.equal(dft, mm.dft) and dft.dtype == torch.float32
    assert mm.matmul_dft()[0] is mm.dft
    meta_dft, meta_span = supermel.Spectrogram(**kw).to("meta").matmul_dft()
    assert meta_dft.device.type == "meta" and meta_dft.shape == mm.dft.shape and meta_span == span
    other = supermel.Spectrogram(**dict(kw, window="hamming"), dtype=torch.float64)
    fft64 = supermel.Spectrogram(**kw, dtype=torch.float64)
    fft64.load_state_dict(other.state_dict())
    want = supermel.Spectrogram(**dict(kw, window="hamming"), backend="matmul", dtype=torch.float64)
    got, got_span = fft64.matmul_dft()
    assert got_span == want.window_span and torch.allclose(got, want.dft, rtol=0, atol=1e-15)


# =========================================================================== finiteness check
def test_check_finite_false_skips_the_check():
    y = np.zeros(4000, np.float32)
    y[2000] = np.nan
    with pytest.raises(supermel.ParameterError):
        supermel.MelSpectrogram(**MEL_KW)(y)
    out = supermel.MelSpectrogram(check_finite=False, **MEL_KW)(y)
    assert np.isnan(out).any() and np.isfinite(out[..., 0]).all()


# =========================================================================== autograd
def test_gradients_flow_through_the_modules(make_signal):
    """The modules are differentiable (e.g. a mel loss on generated audio): short and long inputs."""
    for seconds in (0.05, 1.0):
        y = torch.from_numpy(make_signal("speech", 16000, int(seconds * 16000), (2,), np.float64)).requires_grad_()
        for kind in ("Spectrogram", "MelSpectrogram"):
            cls, kw = KINDS[kind]
            module = cls(dtype=torch.float64, **kw)
            (grad,) = torch.autograd.grad(module(y).sum(), y)
            assert grad.shape == y.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0, (kind, seconds)
    short = torch.from_numpy(make_signal("noise", 8000, 300, (), np.float64)).requires_grad_()
    module = supermel.MelSpectrogram(sr=8000, n_fft=64, hop_length=32, n_mels=8, power=1.5, dtype=torch.float64)
    assert torch.autograd.gradcheck(module, (short,))


# =========================================================================== torch.compile
COMPILE_CASES = [
    pytest.param(
        "MelSpectrogram",
        dict(sr=16000, n_fft=400, hop_length=160, n_mels=80),
        np.float32,
        (2, 16000),
        id="MelSpectrogram-whisper-like-float32",
    ),
    pytest.param(
        "Spectrogram",
        dict(n_fft=255, win_length=200, hop_length=300, pad_mode="reflect", power=1.5, backend="matmul"),
        np.float64,
        (3, 5001),
        id="Spectrogram-matmul-reflect-large-hop-float64",
    ),
    pytest.param(
        "MFCC",
        dict(sr=16000, n_fft=512, hop_length=128, n_mels=40, n_mfcc=20, lifter=22, pad_mode="edge"),
        np.float32,
        (2, 12000),
        id="MFCC-edge-lifter-float32",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind,kw,dtype,shape", COMPILE_CASES)
def test_torch_compile_fullgraph_equals_eager(kind, kw, dtype, shape, make_signal):
    """fullgraph=True with the default check_finite=True (skipped while compiling), inductor on CPU."""
    cls = KINDS[kind][0]
    module = cls(dtype=TORCH_DTYPE[dtype], **kw)
    assert all(m.check_finite for m in module.modules() if isinstance(m, supermel.Spectrogram)), "default check_finite=True"
    compiled = torch.compile(module, fullgraph=True, dynamic=False, backend="inductor")
    y = make_signal("speech", kw.get("sr", 16000), shape[-1], shape[:-1], dtype)
    t = torch.from_numpy(y)
    # compiled and eager both on the torch route (compiled takes the eager call's route; native vs torch: tests/test_native.py)
    with warnings.catch_warnings(), supermel._native.use_native(False):
        warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
        got = compiled(t)
        got2 = compiled(torch.from_numpy(y[..., ::-1].copy()))  # same shape: no recompilation
    with supermel._native.use_native(False):
        eager = module(t)
        eager2 = module(torch.from_numpy(y[..., ::-1].copy()))
    assert isinstance(got, torch.Tensor) and got.dtype == eager.dtype and got.shape == eager.shape
    assert rel_err(got, eager) <= 1e-6
    assert rel_err(got2, eager2) <= 1e-6
    spec_keys = ("n_fft", "hop_length", "win_length", "window", "center", "pad_mode", "power")
    ref_kw = {k: v for k, v in kw.items() if k != "backend"}
    if kind == "Spectrogram":
        ref_kw = {k: v for k, v in ref_kw.items() if k in spec_keys}
    assert rel_err(got, _librosa(kind, y, ref_kw)) <= TOL[np.dtype(dtype)]
