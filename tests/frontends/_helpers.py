"""Helpers shared by the front-end tests of tests/frontends/ (``from _helpers import ...``).

Fixtures live in tests/conftest.py (``noise16``, ``torch_kernels``): a second
conftest.py here would take the module name ``conftest`` and break
``from conftest import SEED, check_log`` in the other test modules.

Offline front ends against their references. Every family's references
(``ref_*``) and tolerances are beside its tests (test_wav2lip.py,
test_whisper.py, ...), except kaldi-native-fbank's, used by test_kaldi.py and
test_kaldi_models.py (FunASR), which are here. Tolerances (frontends.md
section 10) are stated where used, with the reason. The recurring one:
supermel computes in float32 by default; the librosa references run in
float64. float32 rounding of the FFT is ~1e-7 of a frame's energy, so it is
invisible in loud cells but dominates cells 60+ dB below the loudest one (e.g.
bands above 8 kHz of speech resampled from 16 kHz). There, the log of a mel
value is the log of rounding noise and can differ by ~1 (Vocos, no floor worth
the name); the *linear* error stays at float32 rounding of the loudest value
everywhere. So log-domain features are checked (a) in the log domain on cells
within 60 dB of the clip's maximum and (b) in the linear domain on all cells,
relative to the maximum (``conftest.check_log``); and in float64
(``dtype=torch.float64``) on all cells at 1e-7 (:data:`F64_ATOL`).

Streaming front ends against their offline front ends. In float64
(``dtype=torch.float64``) streaming and offline run the same arithmetic on the
same samples, only in different block shapes (FFT batch and mel GEMM sizes),
so they agree to a few float64 ulps of the feature values (observed <= 4e-15
on features of magnitude <= 20): ``F64`` = rtol 1e-10, atol 1e-10. In float32
the same block-shape effect is a few float32 ulps of the mel energies
(observed <= 2e-6 on log features of magnitude <= 20), but in the log domain a
band 80 dB below its frame's loudest one carries the FFT's rounding relative
to the loud part, so we allow ``F32`` = rtol 1e-5, atol 1e-4. Any real
streaming error (a lost pre-emphasis predecessor, a shifted frame, a wrong
edge) changes features by 1e-2 or more, and the float64 checks would see
anything above 1e-10.

The CPU steady state (the ring step, or the static step of a declared
``chunk_size``) computes its FFT with numpy (pocketfft, as librosa), the
offline path with torch: two FFTs that round differently. In float64 that
leaves ~1e-16 of a frame's peak in every band, which the log of a band 120 dB
below the peak turns into up to ~3e-9 (observed): ``F64_FFT`` = rtol 1e-10,
atol 1e-7, still five orders below any real streaming error. So the streaming
tests run the streaming machinery with torch's kernels (the ``torch_kernels``
fixture of tests/conftest.py, requested by ``pytestmark`` in
test_frontend_streaming.py and by ``@pytest.mark.usefixtures("torch_kernels")``
on the streaming tests of the family files: the CUDA step's code and the
offline FFT), and ``test_float64_streams_equal_offline`` runs both executors;
the numpy kernels are also held to the core's tolerance against librosa in
tests/test_streaming.py.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

import kaldi_native_fbank as knf  # the reference; in the test extra


def check_abs(out, ref, atol: float, what: str) -> None:
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    err = np.abs(out - ref).max()
    assert err <= atol, f"{what}: max abs error {err:.3g} > {atol:g}"


#: float64 supermel vs float64 librosa: the same arithmetic up to summation order
#: (FFT and matrix-product orderings); ~1e-12 in loud cells, up to ~4e-9 in the log
#: of cells at 1e-10 of the maximum.
F64_ATOL = 1e-7


def preemph(x: np.ndarray) -> np.ndarray:
    """Whole-signal pre-emphasis as the originals: ``scipy.signal.lfilter([1, -0.97], [1], x)`` (float64)."""
    return scipy.signal.lfilter([1.0, -0.97], [1.0], x.astype(np.float64))


# =========================================================================== kaldi-native-fbank (test_kaldi.py, test_kaldi_models.py)
def ref_knf(x, *, num_bins=80, sr=16000, **opts):
    """``kaldi_native_fbank.OnlineFbank`` with dither 0 and the given frame/mel options."""
    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = sr
    o.mel_opts.num_bins = num_bins
    for k, v in opts.items():
        setattr(o.frame_opts if hasattr(o.frame_opts, k) else o.mel_opts if hasattr(o.mel_opts, k) else o, k, v)
    f = knf.OnlineFbank(o)
    f.accept_waveform(sr, x.astype(np.float32).tolist())
    f.input_finished()
    return np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float64).reshape(-1, num_bins)


#: knf runs everything in float32, its mel bank included (weights up to 1.1e-5 off the
#: exact bank: test_kaldi_filters_vs_knf), so even loud cells differ by ~1e-4 (measured
#: <= 9.3e-5 within 40 dB). 40 dB rather than 60: knf's own float32 FFT rounding shows
#: 50 dB down (3.7e-4 at 22.05 kHz in the resampler's transition band, the same whether
#: supermel runs in float32 or float64). All cells: linear error <= 8.5e-6 of the
#: maximum measured, 2e-5 allowed.
KALDI = dict(log_base=math.e, power=2, loud_db=40.0, loud_atol=2e-4, lin_rel=2e-5)


# =========================================================================== streaming (module docstring)
F32 = dict(rtol=1e-5, atol=1e-4)
F64 = dict(rtol=1e-10, atol=1e-10)
F64_FFT = dict(rtol=1e-10, atol=1e-7)

#: chunk sizes drawn for random chunkings: empty, 1-sample, odd and large chunks
SIZES = (0, 1, 2, 7, 160, 333, 1024, 2999, 4096)


def clip(speech_at, sr: int, seconds: float, offset: float = 0.5, dtype=np.float32) -> np.ndarray:
    """``seconds`` of the speech clip at ``sr``, from ``offset`` s in."""
    y = speech_at(sr)
    a = int(offset * sr)
    return np.ascontiguousarray(y[a : a + int(seconds * sr)], dtype=dtype)


def random_cuts(n: int, rng: np.random.Generator, sizes=SIZES) -> list:
    """Sorted cut points covering [0, n] with chunk sizes drawn from ``sizes`` (zeros included)."""
    cuts, i = [], 0
    while i < n:
        i = min(n, i + int(rng.choice(sizes)))
        cuts.append(i)
    return cuts


def stream_all(stream, y: np.ndarray, cuts, axis: int):
    """Push ``y`` cut at ``cuts``, then flush; concatenate along ``axis``."""
    parts, i = [], 0
    for c in list(cuts):
        parts.append(stream.push(y[..., i:c]))
        i = c
    assert i == y.shape[-1]
    parts.append(stream.flush())
    return np.concatenate(parts, axis=axis)


def close(got, want, tol, what=""):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != offline {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != offline {want.dtype}"
    np.testing.assert_allclose(got, want, err_msg=what, **tol)
