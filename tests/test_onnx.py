"""ONNX export: the exported graphs, run by onnxruntime, equal librosa.

Each offline configuration is exported once (module-scoped fixture) and the
file is then checked on speech and noise, on other lengths and batch sizes, and
for its operators. The streaming step is fed its own state back through
onnxruntime and compared with librosa's offline frames, as documented in
:func:`supermel.onnx.export_streaming_step_onnx`. References come from librosa.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings

import librosa
import numpy as np
import pytest
import torch

import supermel
from supermel import ParameterError, _core
from supermel import onnx as so

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from conftest import SEED, rel_err, white_noise  # noqa: E402

REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
DEFAULTS = dict(sr=22050)  # librosa's defaults: n_fft 2048, hop 512, 128 mels, fmin 0, fmax sr / 2
TOL = 2e-5  # relative Frobenius error, float32
SPECTRAL_OPS = {"STFT", "DFT", "Rfft", "Irfft", "FFT", "IFFT"}
COMPLEX = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}

# name: (configuration, center, pad_mode, backend of the module handed to export_onnx)
CASES = {
    "ref-center-constant": (REF, True, "constant", "auto"),  # "auto" is the fft route: exported via its matmul twin
    "ref-center-reflect": (REF, True, "reflect", "matmul"),
    "ref-uncentered": (REF, False, "constant", "auto"),
    "defaults-center-constant": (DEFAULTS, True, "constant", "matmul"),
    "defaults-center-reflect": (DEFAULTS, True, "reflect", "auto"),
    "defaults-uncentered": (DEFAULTS, False, "reflect", "matmul"),  # pad_mode is ignored without centring
}


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def librosa_mel(y, cfg, center, pad_mode, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft > len(y) warnings for the short lengths
        return librosa.feature.melspectrogram(y=y, **cfg, center=center, pad_mode=pad_mode, **kw)


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    cfg, center, pad_mode, backend = CASES[request.param]
    module = supermel.MelSpectrogram(**cfg, center=center, pad_mode=pad_mode, backend=backend)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    assert so.export_onnx(module, path) == str(path)
    return dict(path=path, sess=session(path), module=module, cfg=cfg, center=center, pad_mode=pad_mode)


# ----------------------------------------------------------------------------- offline graph
def test_offline_graph_equals_librosa_on_speech_and_noise(exported, speech_at):
    cfg, sr = exported["cfg"], exported["cfg"]["sr"]
    speech = speech_at(sr)[: 2 * sr]  # the first 2 s
    noise = white_noise(np.random.default_rng(SEED), (2 * sr,))
    y = np.stack([speech, noise])
    got = exported["sess"].run(None, {"y": y})[0]
    assert got.dtype == np.float32
    for row, what in enumerate(("speech", "noise")):
        want = librosa_mel(y[row], cfg, exported["center"], exported["pad_mode"])
        err = rel_err(got[row], want)
        assert err <= TOL, f"{what}: relative error {err:.3g}"


def test_one_file_serves_other_lengths_and_batch_sizes(exported):
    cfg, center, pad_mode = exported["cfg"], exported["center"], exported["pad_mode"]
    n_fft = 2048 if "n_fft" not in cfg else cfg["n_fft"]
    graph = onnx.load(str(exported["path"])).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "n_samples"], dims
    out_dims = graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch" and out_dims[2].dim_param == "n_frames"
    n_min = n_fft if not center else (n_fft // 2 + 1 if pad_mode == "reflect" else 1)
    rng = np.random.default_rng(SEED + 1)
    for batch, n in [(1, 12345), (3, 7 * n_fft + 3), (2, n_min), (1, n_min + 37)]:
        y = white_noise(rng, (batch, n))
        got = exported["sess"].run(None, {"y": y})[0]
        want = librosa_mel(y, cfg, center, pad_mode)
        assert got.shape == want.shape, (batch, n)
        err = rel_err(got, want)
        assert err <= TOL, f"batch {batch}, {n} samples: relative error {err:.3g}"


def test_graph_is_a_real_matrix_product(exported):
    model = onnx.load(str(exported["path"]))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & SPECTRAL_OPS, ops
    assert "MatMul" in ops
    assert {n.domain for n in model.graph.node} <= {""}, "only standard ONNX operators"
    assert not model.functions
    inferred = onnx.shape_inference.infer_shapes(model).graph
    values = list(inferred.input) + list(inferred.output) + list(inferred.value_info)
    assert all(v.type.tensor_type.elem_type not in COMPLEX for v in values)
    assert all(t.data_type not in COMPLEX for t in inferred.initializer)
    assert so.graph_problems(model) == []
    # One self-contained file: every constant is inside it.
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_graph_check_flags_spectral_ops_and_complex_values():
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16, 1])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 9, 2])
    dft = h.make_node("DFT", ["x"], ["y"], onesided=1)
    problems = so.graph_problems(h.make_model(h.make_graph([dft], "g", [x], [y])))
    assert any("DFT" in p for p in problems)
    c = h.make_tensor_value_info("c", onnx.TensorProto.COMPLEX64, [2])
    ident = h.make_node("Identity", ["c"], ["d"])
    d = h.make_tensor_value_info("d", onnx.TensorProto.COMPLEX64, [2])
    assert so.graph_problems(h.make_model(h.make_graph([ident], "g", [c], [d])))


def test_static_export_of_a_spectrogram_fixes_the_shape(tmp_path):
    """dynamic=False, a magnitude Spectrogram on the fft route, short window, reflect padding, opset 18."""
    module = supermel.Spectrogram(n_fft=512, hop_length=128, win_length=400, power=1.0, pad_mode="reflect", backend="fft")
    path = so.export_onnx(module, tmp_path / "static.onnx", n_samples=5000, batch=2, dynamic=False, opset=18)
    model = onnx.load(path)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 5000]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [2, 257, 40]
    assert {o.version for o in model.opset_import if o.domain == ""} == {18}
    assert not {n.op_type for n in model.graph.node} & SPECTRAL_OPS
    sess = session(path)
    y = white_noise(np.random.default_rng(SEED + 2), (2, 5000))
    want = np.abs(librosa.stft(y, n_fft=512, hop_length=128, win_length=400, pad_mode="reflect"))
    assert rel_err(sess.run(None, {"y": y})[0], want) <= TOL
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"y": np.zeros((2, 5001), np.float32)})


# ----------------------------------------------------------------------------- fft modules: the matmul twin
def test_fft_module_is_exported_through_its_own_constants(speech_at):
    fft = supermel.MelSpectrogram(**REF)
    assert fft.spectrogram.backend == "fft"
    twin = so._matmul_twin(fft)
    direct = supermel.MelSpectrogram(**REF, backend="matmul")
    assert fft.spectrogram.backend == "fft" and fft.spectrogram.dft is None, "the module handed in is not changed"
    assert twin.spectrogram.backend == "matmul"
    assert torch.equal(twin.spectrogram.window, fft.spectrogram.window)
    assert torch.equal(twin.mel_scale.fb, fft.mel_scale.fb)
    assert torch.equal(twin.spectrogram.dft, direct.spectrogram.dft)
    # float64 modules are exported in float32 with the float32 module's constants.
    twin64 = so._matmul_twin(supermel.MelSpectrogram(**REF, dtype=torch.float64))
    assert twin64.mel_scale.fb.dtype == torch.float32
    assert torch.equal(twin64.spectrogram.dft, direct.spectrogram.dft)
    assert torch.equal(twin64.mel_scale.fb, direct.mel_scale.fb)


def test_fft_module_with_a_loaded_window_keeps_that_window(speech_at):
    module = supermel.MelSpectrogram(**REF)  # hann
    state = module.state_dict()
    state["spectrogram.window"] = torch.as_tensor(librosa.filters.get_window("hamming", 800, fftbins=True), dtype=torch.float32)
    module.load_state_dict(state)
    twin = so._matmul_twin(module)
    y = speech_at(16000)[:16000]
    want = librosa.feature.melspectrogram(y=y, **REF, window="hamming")
    assert rel_err(twin.mel_tf(torch.from_numpy(y)[None])[0], want) <= TOL


# ----------------------------------------------------------------------------- streaming step
def test_streaming_step_fed_back_equals_offline(tmp_path, speech_at):
    """Reference configuration, constant padding: zero state, fixed chunks, zeros at the end."""
    module = supermel.MelSpectrogram(**REF)
    chunk = 800
    path = so.export_streaming_step_onnx(module, tmp_path / "step.onnx", chunk_size=chunk)
    lay = so.streaming_step_layout(module, chunk_size=chunk)
    assert (lay.state_size, lay.warmup_frames, lay.frames_per_step) == (600, 1, 4)
    sess = session(path)
    names = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    assert names == (["state", "chunk"], ["new_state", "frames"])

    y = speech_at(16000)[: 3 * 16000 + 333]  # 3 s and a partial chunk
    n = len(y)
    state = so.initial_state(module)
    assert state.shape == (1, 600) and not state.any()
    x = np.zeros(lay.steps_for(n) * chunk, np.float32)
    x[:n] = y  # constant padding: the right padding and the tail are zeros
    outs, emitted = [], []
    for i in range(len(x) // chunk):
        piece = x[None, i * chunk : (i + 1) * chunk]
        new_state, frames = sess.run(None, {"state": state, "chunk": piece})
        assert frames.shape == (1, 80, 4)
        np.testing.assert_array_equal(new_state, np.concatenate([state, piece], axis=1)[:, chunk:])
        state = new_state
        outs.append(frames)
        emitted.append(sum(o.shape[-1] for o in outs) - lay.warmup_frames)
    got = np.concatenate(outs, axis=-1)[0, :, lay.warmup_frames : lay.warmup_frames + lay.num_frames(n)]
    want = librosa.feature.melspectrogram(y=y, **REF)
    assert got.shape == want.shape
    assert rel_err(got, want) <= TOL
    # No added latency: each call emits every frame whose window it completed.
    ready = [_core.frames_ready((i + 1) * chunk, n_fft=800, hop_length=200, pad=400, pad_mode="constant") for i in range(len(emitted))]
    assert emitted[: n // chunk] == ready[: n // chunk]


def test_streaming_step_reflect_needs_the_head_and_the_right_padding(tmp_path, speech_at):
    module = supermel.MelSpectrogram(**REF, pad_mode="reflect")
    chunk = 1600
    path = so.export_streaming_step_onnx(module, tmp_path / "step.onnx", chunk_size=chunk, num_streams=2, dynamic_streams=True)
    sess = session(path)
    rng = np.random.default_rng(SEED + 4)
    speech = speech_at(16000)
    y = np.stack([speech[: 3 * 16000 + 111], white_noise(rng, (3 * 16000 + 111,)), speech[16000 : 4 * 16000 + 111]])
    want = librosa.feature.melspectrogram(y=y, **REF, pad_mode="reflect")
    # The documented recipe (head -> initial state, right padding after the audio), 3 streams on a dynamic axis.
    got = so.run_streaming_onnx(sess, module, y, chunk_size=chunk)
    assert got.shape == want.shape
    for s in range(3):
        assert rel_err(got[s], want[s]) <= TOL, s

    # Starting from a zero state instead: exactly the frames that read the left padding differ
    # (visibly so on the noise stream; the speech clip starts almost silent).
    lay = so.streaming_step_layout(module, chunk_size=chunk)
    n = y.shape[-1]
    x = np.zeros((3, lay.steps_for(n) * chunk), np.float32)
    x[:, :n] = y
    x[:, n : n + lay.pad] = so.right_padding(module, y[:, -(lay.pad + 1) :])
    state = np.zeros((3, lay.state_size), np.float32)
    outs = []
    for i in range(x.shape[1] // chunk):
        state, frames = sess.run(None, {"state": state, "chunk": x[:, i * chunk : (i + 1) * chunk]})
        outs.append(frames)
    zero_start = np.concatenate(outs, axis=-1)[..., lay.warmup_frames : lay.warmup_frames + want.shape[-1]]
    k = -(-lay.pad // lay.hop_length)  # frames t < ceil(pad / hop) read the left padding
    assert k == 2
    for s in range(3):
        assert rel_err(zero_start[s, :, k:], want[s, :, k:]) <= TOL
    for t in range(k):
        assert rel_err(zero_start[1, :, t], want[1, :, t]) > 1e-2, t


STREAM_CASES = {
    # librosa's defaults without centring: K = 1536 (aligned), three warm-up frames; built from a stream object.
    "defaults-uncentered": (DEFAULTS, dict(center=False), 1536, 3),
    # K = (pad - n_fft) mod hop + n_fft - hop = 100 + 700: the state is not a multiple of the hop; edge padding.
    "unaligned-edge": (dict(sr=22050, n_fft=1000, hop_length=300, win_length=900, n_mels=64), dict(pad_mode="edge"), 800, 1),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_streaming_step_other_layouts(case, tmp_path, speech_at):
    cfg, extra, state_size, warmup = STREAM_CASES[case]
    hop = cfg.get("hop_length", 512)
    chunk = 4 * hop
    module = supermel.MelSpectrogram(**cfg, **extra)
    source = supermel.StreamingMelSpectrogram(**cfg, **extra, chunk_size=chunk) if case == "defaults-uncentered" else module
    path = so.export_streaming_step_onnx(source, tmp_path / "step.onnx", chunk_size=None if source is not module else chunk)
    lay = so.streaming_step_layout(module, chunk_size=chunk)
    assert (lay.state_size, lay.warmup_frames) == (state_size, warmup)
    y = speech_at(22050)[22050 : 4 * 22050 + 1000]
    got = so.run_streaming_onnx(path, module, y, chunk_size=chunk)
    want = librosa.feature.melspectrogram(y=y, **cfg, **extra)
    assert got.shape == want.shape
    assert rel_err(got, want) <= TOL


# ----------------------------------------------------------------------------- providers: TF32 off
def test_cuda_provider_gets_tf32_off():
    """onnxruntime's CUDA provider runs float32 products in TF32 by default (Ampere and newer):
    the sessions supermel opens pass {"use_tf32": 0} unless the caller's options say otherwise."""
    assert so.session_providers() == ["CPUExecutionProvider"]
    assert so.session_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"use_tf32": 0}),
        "CPUExecutionProvider",
    ]
    assert so.session_providers([("CUDAExecutionProvider", {"device_id": 1})]) == [("CUDAExecutionProvider", {"device_id": 1, "use_tf32": 0})]
    assert so.session_providers([("CUDAExecutionProvider", {"use_tf32": 1})]) == [("CUDAExecutionProvider", {"use_tf32": 1})]  # the caller's choice


def test_run_streaming_onnx_opens_the_path_with_the_providers(tmp_path, speech_at, monkeypatch):
    module = supermel.MelSpectrogram(**REF)
    path = so.export_streaming_step_onnx(module, tmp_path / "step.onnx", chunk_size=400, verify=False)
    opened = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):
        opened.append(kwargs.get("providers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    y = speech_at(16000)[:16000]
    got = so.run_streaming_onnx(path, module, y, chunk_size=400, providers=["CPUExecutionProvider"])
    assert opened == [["CPUExecutionProvider"]]
    assert rel_err(got, librosa.feature.melspectrogram(y=y, **REF)) <= TOL
    sess = so.inference_session(path)
    assert sess.get_providers() == ["CPUExecutionProvider"] and opened[-1] == ["CPUExecutionProvider"]


# ----------------------------------------------------------------------------- errors
def test_missing_packages_name_the_extra(monkeypatch):
    module = supermel.MelSpectrogram(**REF)
    for missing in ("onnxscript", "onnx", "onnxruntime"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, missing, None)  # makes `import missing` fail
            with pytest.raises(ParameterError, match=rf"{missing}\b.*pip install 'supermel\[onnx\]'"):
                so.export_onnx(module, "unused.onnx")
            with pytest.raises(ParameterError, match=r"supermel\[onnx\]"):
                so.export_streaming_step_onnx(module, "unused.onnx", chunk_size=800)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: so.export_onnx(supermel.MFCC(sr=16000), "x.onnx"), "MelSpectrogram or supermel.Spectrogram"),
        (lambda: so.export_onnx(supermel.MelSpectrogram(n_fft=512, hop_length=256, pad_mode="reflect"), "x.onnx"), "pad_mode='constant'"),
        (lambda: so.export_onnx(supermel.MelSpectrogram(**REF), "x.onnx", dynamic=False), "pass n_samples"),
        (lambda: so.export_onnx(supermel.MelSpectrogram(**REF, center=False), "x.onnx", n_samples=799), "at least 800"),
        (lambda: so.export_onnx(supermel.MelSpectrogram(**REF), "x.onnx", opset=11), "opset"),
        (lambda: so.export_onnx(supermel.MelSpectrogram(**REF), "/no/such/folder/x.onnx"), "does not exist"),
        (lambda: so.export_streaming_step_onnx(supermel.MelSpectrogram(**REF), "x.onnx", chunk_size=500), "multiple of hop_length=200"),
        (lambda: so.export_streaming_step_onnx(supermel.MelSpectrogram(**REF), "x.onnx"), "pass chunk_size"),
        (lambda: so.export_streaming_step_onnx(supermel.Spectrogram(n_fft=256, hop_length=256, center=False), "x.onnx", chunk_size=512), "no state"),
        (lambda: so.initial_state(supermel.MelSpectrogram(**REF, pad_mode="reflect")), r"head=y\[\.\.\., :401\]"),
        (lambda: so.initial_state(supermel.MelSpectrogram(**REF, pad_mode="reflect"), head=np.zeros(400, np.float32)), "needs the first 401"),
    ],
)
def test_errors_name_the_fix(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_refused_reflect_configuration_really_differs_from_whole_signal_padding():
    """Why n_fft 512 / hop 256 / reflect is refused: librosa's tail padding then differs for some lengths.

    At lengths that are multiples of 256 librosa reflects a 256-sample tail segment
    by 256 samples, which numpy wraps: the last padded sample differs (under a
    boxcar window, so that it weighs as much as the others).
    """
    y = white_noise(np.random.default_rng(SEED + 5), (768,)).astype(np.float64)
    window = np.ones(512)
    want = np.abs(librosa.stft(y, n_fft=512, hop_length=256, window=window, pad_mode="reflect")) ** 2
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, 256, mode="reflect"), 512)[::256]
    whole = np.abs(np.fft.rfft(frames, axis=-1).T) ** 2
    assert rel_err(whole[:, :-1], want[:, :-1]) < 1e-12
    assert rel_err(whole[:, -1], want[:, -1]) > 1e-3


def test_package_import_does_not_import_onnx(monkeypatch):
    """supermel.onnx runs at package import (supermel/__init__.py) with onnx, onnxscript and onnxruntime absent."""
    assert supermel.export_onnx is so.export_onnx and supermel.export_streaming_step_onnx is so.export_streaming_step_onnx
    assert {"export_onnx", "export_streaming_step_onnx"} <= set(supermel.__all__)
    for name in ("onnx", "onnxruntime", "onnxscript"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of them now raises ImportError
    spec = importlib.util.spec_from_file_location("supermel._onnx_import_probe", so.__file__)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # dataclasses look their module up there
    spec.loader.exec_module(probe)  # the module's top level, as at package import
    assert callable(probe.export_onnx)
    with pytest.raises(ParameterError, match=r"pip install 'supermel\[onnx\]'"):
        probe.export_onnx(supermel.MelSpectrogram(**REF), "unused.onnx")
