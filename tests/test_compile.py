"""``torch.compile`` of the modules: the traced graph is real-valued, compiled equals eager.

On the FFT route without autograd a mel spectrogram enters the graph as one
custom op (``supermel::mel_signal``: padding and spectral core, the single native
call of the eager path where the native core runs), a spectrogram as two
(``supermel::pad_signal``, ``supermel::power_frames``), running the eager kernels; the graphs are inspected with a backend that records them (the
Dynamo graph and the ATen graph AOTAutograd hands to the compiler). Speed lives
in ``supermel bench --only compile`` (no timed assertions here).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from conftest import rel_err

import supermel
from supermel import _core

REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)

pytestmark = pytest.mark.skipif(not _core._HAS_CUSTOM_OP, reason="torch < 2.4: no torch.library.custom_op")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every test compiles from scratch (Dynamo caches per code object, across module instances)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Recorder:
    """A ``torch.compile`` backend that keeps the Dynamo graphs and the forward ATen graphs, then runs them as they are."""

    def __init__(self) -> None:
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.dynamo: list = []
        self.aten: list = []

        def fw(gm, example_inputs):
            self.aten.append(gm)
            return make_boxed_func(gm.forward)

        self._aot = aot_autograd(fw_compiler=fw)

    def __call__(self, gm, example_inputs):
        self.dynamo.append(gm)
        return self._aot(gm, example_inputs)

    def nodes(self):
        return [n for g in self.dynamo + self.aten for n in g.graph.nodes]


def _torch_route():
    """``use_native(False)`` where the native core exists: the route the compiled graph's ops run
    (the native core has its own bound against it: tests/test_native.py)."""
    try:
        from supermel import _native  # type: ignore[attr-defined]
    except ImportError:
        return contextlib.nullcontext()
    return _native.use_native(False)


def _eager(module, y):
    """The module eager on the torch route."""
    with _torch_route():
        return module(y)


def _both_routes(compiled, module, y, tol=1e-7):
    """Compiled equals eager on the route eager takes (the ops run eagerly: the native core where it is
    built and enabled) and on the torch route (``use_native(False)`` around both calls)."""
    got = compiled(y)
    assert rel_err(got, module(y)) <= tol
    with _torch_route():
        assert rel_err(compiled(y), module(y)) <= tol
    return got


def _complex_nodes(rec: Recorder) -> list:
    """Nodes whose value is a complex tensor, or whose target is an FFT operator."""
    bad = []
    for n in rec.nodes():
        vals = [n.meta.get("val"), n.meta.get("example_value")]
        flat = []
        for v in vals:
            flat.extend(v if isinstance(v, (list, tuple)) else [v])
        if any(isinstance(v, torch.Tensor) and v.dtype.is_complex for v in flat) or "fft" in str(n.target):
            bad.append(f"{n.op} {n.target}")
    return bad


def _targets(rec: Recorder) -> set:
    return {str(n.target) for n in rec.nodes() if n.op == "call_function"}


def _signal(n: int, batch=(), dtype=np.float32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    y = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(tuple(batch) + (n,))
    return y.astype(dtype)


MODULES = [
    pytest.param(lambda dt: supermel.MelSpectrogram(**REF, dtype=dt), id="MelSpectrogram-reference"),
    pytest.param(lambda dt: supermel.MelSpectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=80, pad_mode="reflect", dtype=dt), id="MelSpectrogram-reflect"),
    pytest.param(lambda dt: supermel.Spectrogram(n_fft=255, win_length=200, hop_length=100, power=1.0, dtype=dt), id="Spectrogram-odd-magnitude"),
    pytest.param(lambda dt: supermel.MFCC(sr=16000, n_fft=512, hop_length=128, n_mels=40, n_mfcc=13, dtype=dt), id="MFCC"),
]


@pytest.mark.parametrize("make", MODULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("seconds", [0.05, 1.3], ids=["short", "blocks"])
def test_compiled_graph_is_real_valued_and_equals_eager(make, dtype, seconds):
    module = make(dtype)
    rec = Recorder()
    compiled = torch.compile(module, fullgraph=True, dynamic=False, backend=rec)
    y = torch.from_numpy(_signal(int(seconds * 16000), batch=(2,), dtype=np.float64 if dtype == torch.float64 else np.float32))
    got = _both_routes(compiled, module, y)
    eager = _eager(module, y)
    assert rec.dynamo and rec.aten, "the backend saw no graph"
    assert _complex_nodes(rec) == []
    assert any("supermel" in t for t in _targets(rec)), _targets(rec)
    # eager's padding (center=True), not inductor's: inside the fused op (mel modules) or as its own op (Spectrogram)
    assert any("mel_signal" in t or "pad_signal" in t for t in _targets(rec)), _targets(rec)
    assert got.dtype == eager.dtype and got.shape == eager.shape  # the same kernels on the same padded signal


@pytest.mark.parametrize("center", [True, False], ids=["center", "uncentred"])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_mel_graph_is_the_one_fused_op(center, pad_mode):
    """A compiled MelSpectrogram's graph holds ``supermel::mel_signal`` once and nothing else of
    supermel's: padding and spectral core in one op, as the eager native call does them in one crossing."""
    module = supermel.MelSpectrogram(**REF, center=center, pad_mode=pad_mode)
    rec = Recorder()
    compiled = torch.compile(module, fullgraph=True, dynamic=False, backend=rec)
    _both_routes(compiled, module, torch.from_numpy(_signal(5000, batch=(3,))))
    ours = [str(n.target) for g in rec.aten for n in g.graph.nodes if n.op == "call_function" and "supermel" in str(n.target)]
    assert ours == ["supermel.mel_signal.default"], ours
    assert _complex_nodes(rec) == []


def test_mel_frames_of_a_short_signal_take_the_torch_padding():
    """Shorter than the native core pads (reflect, fewer samples than the padding: numpy's periodic
    fold), the fused op pads on the torch route: compiled still equals eager."""
    module = supermel.MelSpectrogram(sr=16000, n_fft=512, hop_length=128, n_mels=40, pad_mode="reflect")
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's short-signal warning (eager)
        _both_routes(compiled, module, torch.from_numpy(_signal(200, batch=(2,))))


def test_without_the_custom_op_the_graph_held_a_complex_rfft(monkeypatch):
    """The check above can fail: the operator route (what torch.compile traced before) has a complex node."""
    monkeypatch.setattr(_core, "_HAS_CUSTOM_OP", False)
    rec = Recorder()
    module = supermel.MelSpectrogram(**REF)
    torch.compile(module, fullgraph=True, dynamic=False, backend=rec)(torch.from_numpy(_signal(4000)))
    assert any("fft" in b for b in _complex_nodes(rec)), _complex_nodes(rec)


def test_dynamic_shapes_use_the_op():
    module = supermel.MelSpectrogram(**REF)
    rec = Recorder()
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend=rec)
    for n in (3000, 5001, 16000):
        y = torch.from_numpy(_signal(n, seed=n))
        _both_routes(compiled, module, y)
    assert _complex_nodes(rec) == []


def test_autograd_keeps_the_operators():
    """With an input that requires grad the graph traces torch's operators (the op has no backward): gradients flow."""
    module = supermel.MelSpectrogram(sr=16000, n_fft=256, hop_length=64, n_mels=20, dtype=torch.float64)
    rec = Recorder()
    compiled = torch.compile(module, fullgraph=True, dynamic=False, backend=rec)
    y = torch.from_numpy(_signal(2000, dtype=np.float64)).requires_grad_()
    (g_c,) = torch.autograd.grad(compiled(y).sum(), y)
    (g_e,) = torch.autograd.grad(module(y).sum(), y)
    assert not any("supermel" in t for t in _targets(rec))
    assert rel_err(g_c, g_e) <= 1e-10


def test_matmul_backend_and_export_trace_operators():
    """backend='matmul' is real-valued as operators; torch.export (the ONNX route) never sees the custom op."""
    rec = Recorder()
    module = supermel.MelSpectrogram(**REF, backend="matmul")
    y = torch.from_numpy(_signal(4000))
    assert rel_err(torch.compile(module, fullgraph=True, dynamic=False, backend=rec)(y), _eager(module, y)) <= 1e-6
    assert _complex_nodes(rec) == [] and not any("supermel" in t for t in _targets(rec))
    ep = torch.export.export(supermel.MelSpectrogram(**REF), (y[None],))
    assert not any("supermel" in str(n.target) for n in ep.graph.nodes)


def test_custom_op_schema_and_fake_shapes():
    """torch.library's own checks of the op (schema, fake kernel, aliasing)."""
    module = supermel.MelSpectrogram(**REF)
    fn = module.mel_function(torch.float32)
    z = torch.nn.functional.pad(torch.from_numpy(_signal(3000, batch=(2,))), (400, 400))
    kw = fn.keywords
    blocks = kw["fb_blocks"]
    args = (z, kw["window"], kw["fb"], [w for _, _, w in blocks], [i for lo, hi, _ in blocks for i in (lo, hi)], 800, 200, 2.0, 0.0)
    torch.library.opcheck(torch.ops.supermel.mel_frames.default, args, test_utils=("test_schema", "test_faketensor"))
    assert torch.equal(torch.ops.supermel.mel_frames.default(*args), fn(z))  # the route eager takes
    with _torch_route():
        assert torch.equal(torch.ops.supermel.mel_frames.default(*args), fn(z))
    y = torch.from_numpy(_signal(3000, batch=(2,)))
    for mode in ("constant", "reflect", "edge", "symmetric"):
        args_s = (y, kw["window"], kw["fb"], args[3], args[4], 800, 200, 400, mode, 2.0, 0.0)
        torch.library.opcheck(torch.ops.supermel.mel_signal.default, args_s, test_utils=("test_schema", "test_faketensor"))
        z_m = _core.pad_signal(y, pad=400, mode=mode, n_fft=800, hop_length=200)
        with _torch_route():  # the torch route: pad_signal then the spectral op, bit for bit
            assert torch.equal(torch.ops.supermel.mel_signal.default(*args_s), fn(z_m))
        # the route eager takes (the native core pads constant/reflect/edge itself): its bound against the torch route
        assert rel_err(torch.ops.supermel.mel_signal.default(*args_s), fn(z_m)) <= 1e-6
    for mode in ("constant", "reflect", "edge"):
        args_z = (y, 400, mode, 800, 200)
        torch.library.opcheck(torch.ops.supermel.pad_signal.default, args_z, test_utils=("test_schema", "test_faketensor"))
        assert torch.equal(torch.ops.supermel.pad_signal.default(*args_z), _core.pad_signal(y, pad=400, mode=mode, n_fft=800, hop_length=200))
    spec = module.spectrogram
    args_p = (z, spec.window, 800, 200, 2.0, 0.0)
    torch.library.opcheck(torch.ops.supermel.power_frames.default, args_p, test_utils=("test_schema", "test_faketensor"))
    with _torch_route():
        assert torch.equal(torch.ops.supermel.power_frames.default(*args_p), spec.power_from_padded(z))


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [1, 60])
def test_inductor_reference_config_equals_eager(seconds):
    """The configuration BENCHMARKS.md times (inductor, CPU): the compiled module agrees with eager."""
    module = supermel.MelSpectrogram(**REF)
    compiled = torch.compile(module, fullgraph=True)
    y = torch.from_numpy(_signal(seconds * 16000))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _both_routes(compiled, module, y)
    # no "Torchinductor does not support code generation for complex operators"
    assert not [str(w.message) for w in seen if "complex" in str(w.message)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_graph_is_real_valued_and_equals_eager():
    module = supermel.MelSpectrogram(**REF, device="cuda", check_finite=False)
    rec = Recorder()
    y = torch.from_numpy(_signal(16000, batch=(2,))).cuda()
    got = torch.compile(module, fullgraph=True, dynamic=False, backend=rec)(y)
    assert _complex_nodes(rec) == [] and any("supermel" in t for t in _targets(rec))
    assert got.device.type == "cuda" and rel_err(got, module(y)) <= 1e-7
    got = torch.compile(module, fullgraph=True, dynamic=False)(y)  # inductor
    assert rel_err(got, module(y)) <= 1e-7


@pytest.mark.parametrize("n", [512, 545])
def test_compiled_reflect_with_a_tail_shorter_than_the_padding_matches_librosa(n):
    """librosa reflects a tail segment of at most ``pad`` samples on its own (numpy folds back inside
    it): the fused op's native call must leave such signals to the torch padding, as eager does
    (n_fft = hop = 64: the case tests/test_pool.py's schedules found)."""
    librosa = pytest.importorskip("librosa")
    kw = dict(sr=8000, n_fft=64, hop_length=64, n_mels=10, pad_mode="reflect")
    y = np.random.default_rng(n).standard_normal(n)
    module = supermel.MelSpectrogram(**kw, dtype=torch.float64)
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    got = compiled(torch.from_numpy(y)).numpy()
    want = librosa.feature.melspectrogram(y=y, **kw)
    assert rel_err(got, want) < 1e-12
# --------------------------------------------------------------------------- front ends
#: compiled front end vs eager (relative Frobenius error): the post-processing runs as torch operators in the
#: graph, as numpy's on the CPU eagerly (Wav2Lip, the Kaldi family): docs/exactness.md, the `wav2lip-autograd` row
FRONTEND_TOL = 2e-6


def _frontend_signal(fe, seconds: float = 1.0) -> torch.Tensor:
    cfg = fe.config
    sr = int(getattr(cfg, "sr", None) or getattr(cfg, "sample_frequency", 16000))
    return torch.from_numpy(_signal(int(seconds * sr), batch=(2,)))


@pytest.mark.parametrize("name", sorted(supermel.frontends()))
def test_every_frontend_compiles_whole_and_equals_eager(name):
    """Every registered front end compiles with ``fullgraph=True`` (no graph break, no guard on a value:
    NeMo's checks of its valid frames read a tensor before, "Could not guard on data-dependent
    expression"), real-valued, and equals eager on both routes."""
    fe = supermel.frontend(name)
    rec = Recorder()
    compiled = torch.compile(fe, fullgraph=True, dynamic=False, backend=rec)
    y = _frontend_signal(fe)
    got = _both_routes(compiled, fe, y, tol=FRONTEND_TOL)
    assert rec.dynamo and rec.aten, "the backend saw no graph"
    assert _complex_nodes(rec) == []
    assert got.shape == fe(y).shape and got.dtype == fe(y).dtype


@pytest.mark.slow
def test_nemo_inductor_equals_eager():
    """``torch.compile(supermel.frontend("nemo-80"), fullgraph=True)``, inductor on the CPU, as a user writes it."""
    fe = supermel.frontend("nemo-80")
    y = _frontend_signal(fe)
    compiled = torch.compile(fe, fullgraph=True)
    _both_routes(compiled, fe, y, tol=FRONTEND_TOL)
    ln = torch.tensor([16000, 9000])
    assert rel_err(compiled(y, ln), fe(y, ln)) <= FRONTEND_TOL


@pytest.mark.parametrize("variant", ["2.5", "2.4"])
def test_nemo_lengths_compile_and_are_checked_in_the_graph(variant):
    """NeMo with ``lengths`` compiles whole too; the checks of the lengths' values (range, two valid
    frames) run inside the graph: a ``RuntimeError`` with the eager ``ParameterError``'s message
    (docs/compile.md, "Checks on values")."""
    fe = supermel.frontend("nemo-80", variant=variant)
    compiled = torch.compile(fe, fullgraph=True, dynamic=False, backend=Recorder())
    y = _frontend_signal(fe)
    for ln in (torch.tensor([16000, 9000]), [12000, 16000]):
        assert rel_err(compiled(y, ln), fe(y, ln)) <= FRONTEND_TOL
        with _torch_route():
            assert rel_err(compiled(y, ln), fe(y, ln)) <= FRONTEND_TOL
    for bad, msg in (([16000, 100], "at least 2 valid frames"), ([16001, 9000], r"lengths must lie in \[0, 16000\]"), ([-1, 9000], "lengths must lie")):
        with pytest.raises(supermel.ParameterError, match=msg):
            fe(y, torch.tensor(bad))
        with pytest.raises(RuntimeError, match=msg):
            compiled(y, torch.tensor(bad))
    # under 2 valid frames known from the shape alone: raised while tracing; with fullgraph=True Dynamo reports
    # it as torch._dynamo.exc.Unsupported (a RuntimeError) naming the ParameterError and its message
    with pytest.raises(RuntimeError, match="ParameterError.*at least 2 valid frames.*got 150 samples"):
        torch.compile(fe, fullgraph=True, dynamic=False, backend=Recorder())(y[:, :150])
