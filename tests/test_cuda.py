"""The CUDA path on a real GPU: what the CPU suite can only emulate (tests/test_capture_safety.py).

Every test here is skipped without CUDA. They decide, on the first GPU, the
items of the GPU-path issue that a CPU cannot: capture and replay of the
streaming step, the output-buffer contract, host-to-device copies of pinned
chunks, device guards (``cuda:N``), non-default streams and threads, TF32
settings (torch's and onnxruntime's), cuFFT plan eviction, host
synchronisations in the steady state.

Run on a GPU machine: ``python -m pytest -q tests/test_cuda.py`` (about a
minute). Nothing here needs an optional package: the reference is supermel's
own float64 CPU offline route (the route the CPU suite checks against
librosa); librosa, onnx, onnxscript and onnxruntime are imported inside the
tests that use them (skipped where missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
import torch

import supermel
import supermel.streaming as streaming

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TWO_GPUS = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two CUDA devices")

REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
TOL32 = 2e-5  # relative Frobenius error against the float64 reference (the suite's float32 tolerance)
TOL64 = 1e-9


# =========================================================================== helpers
def noise(n: int, streams: Optional[int] = None, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((streams, n) if streams else n)).astype(dtype)


def rel(a: Any, b: Any) -> float:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def offline(y: np.ndarray, **kw: Any) -> np.ndarray:
    """supermel's float64 CPU offline route (checked against librosa by the CPU suite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return supermel.MelSpectrogram(**kw, dtype=torch.float64)(np.asarray(y, np.float64))


def graph_stream(cfg: Optional[Dict[str, Any]] = None, **kw: Any) -> supermel.StreamingMelSpectrogram:
    kw.setdefault("device", "cuda")
    kw.setdefault("chunk_size", 200)
    return supermel.StreamingMelSpectrogram(**{**REF, **(cfg or {})}, cuda_graph=True, **kw)


def run_stream(s: Any, y: np.ndarray, chunk: int, mode: str = "device") -> np.ndarray:
    """Push ``y`` in chunks (as device tensors, pinned tensors or numpy arrays), flush, concatenate."""
    parts = []
    for i in range(0, y.shape[-1], chunk):
        c = np.ascontiguousarray(y[..., i : i + chunk])
        if mode == "numpy":
            x: Any = c
        elif mode == "pinned":
            x = torch.from_numpy(c).pin_memory()
        else:
            x = torch.from_numpy(c).to(s.device)
        out = s.push(x)
        parts.append(out if isinstance(out, np.ndarray) else out.clone().cpu().numpy())
    f = s.flush()
    parts.append(f if isinstance(f, np.ndarray) else f.cpu().numpy())
    return np.concatenate(parts, -1)


@pytest.fixture
def count_captures(monkeypatch):
    """Counts CUDA-graph captures (``torch.cuda.graph`` entries) during the test."""
    count = [0]

    class Counting(torch.cuda.graph):
        def __enter__(self):  # type: ignore[no-untyped-def]
            count[0] += 1
            return super().__enter__()

    monkeypatch.setattr(torch.cuda, "graph", Counting)
    return count


@pytest.fixture
def tf32():
    """TF32 matmuls on (as training scripts set them); torch's defaults restored after."""
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.set_float32_matmul_precision("highest")
    setter = getattr(torch._C, "_set_fp32_precision_setter", None)
    if setter is not None:
        setter("cuda", "matmul", "none")
        setter("mkldnn", "matmul", "none")


# =========================================================================== equality with the offline route
EQUALITY = {
    "1-stream-1-hop": dict(streams=None, chunk=200),
    "64-streams-1-hop": dict(streams=64, chunk=200),
    "3-streams-4-hops-reflect": dict(streams=3, chunk=800, cfg=dict(pad_mode="reflect")),
    "2-streams-float64": dict(streams=2, chunk=400, dtype=np.float64),
    "backend-matmul": dict(streams=None, chunk=400, module_kw=dict(backend="matmul")),
    "power1-mag-eps": dict(streams=None, chunk=400, module_kw=dict(power=1.0, mag_eps=1e-9)),
    "odd-hop-center-false": dict(streams=2, chunk=3 * 160, cfg=dict(n_fft=400, hop_length=160, center=False)),
}


@pytest.mark.parametrize("case", list(EQUALITY))
@pytest.mark.parametrize("cuda_graph", [True, False], ids=["graph", "no-graph"])
def test_stream_equals_offline(case, cuda_graph):
    """CUDA-graph step (and the same step uncaptured, chunk_size without a graph) == offline."""
    c = EQUALITY[case]
    dtype = c.get("dtype", np.float32)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    kw = {**REF, **c.get("cfg", {})}
    y = noise(16000, c["streams"], dtype=dtype)
    common = dict(num_streams=c["streams"], chunk_size=c["chunk"], cuda_graph=cuda_graph, check_finite=False, dtype=tdtype)
    if c.get("module_kw"):
        mod = supermel.MelSpectrogram(**kw, **c["module_kw"], dtype=tdtype, device="cuda")
        s = supermel.StreamingMelSpectrogram(module=mod, device="cuda", **common)
    else:
        s = supermel.StreamingMelSpectrogram(**kw, device="cuda", **common)
    got = run_stream(s, y, c["chunk"])
    steps = [st for v in s._steps.values() for st in v]  # the steady-state steps the stream used
    assert steps and all(type(st) is (streaming._GraphStep if cuda_graph else streaming._Step) for st in steps)
    want = offline(y, **kw, **c.get("module_kw", {}))
    err = rel(got, want)
    assert got.dtype == dtype and err <= (TOL64 if dtype == np.float64 else TOL32), err


def test_graph_stream_equals_librosa():
    librosa = pytest.importorskip("librosa")
    y = noise(16000)
    got = run_stream(graph_stream(check_finite=False), y, 200)
    assert rel(got, librosa.feature.melspectrogram(y=y, **REF)) <= TOL32


@pytest.mark.parametrize("mode", ["numpy", "pinned", "device"])
def test_numpy_pinned_and_device_inputs(mode):
    """numpy I/O with cuda_graph=True (numpy out), pinned host tensors and device tensors."""
    y = noise(16000, seed=1)
    s = graph_stream()
    out = s.push(y[:200] if mode == "numpy" else torch.from_numpy(y[:200]))
    assert isinstance(out, np.ndarray) == (mode == "numpy")
    s.reset()
    got = run_stream(s, y, 200, mode)
    assert rel(got, offline(y, **REF)) <= TOL32


def test_chunk_size_without_graph_and_general_path():
    """Device streams without a graph: declared chunk size (the uncaptured step) and any chunking."""
    y = noise(16000, 2, seed=2)
    for kw, chunk in ((dict(chunk_size=400), 400), ({}, 533)):
        s = supermel.StreamingMelSpectrogram(**REF, num_streams=2, device="cuda", **kw)
        got = run_stream(s, y, chunk)
        assert rel(got, offline(y, **REF)) <= TOL32, kw


# =========================================================================== the output-buffer contract
def test_output_is_one_buffer_valid_until_the_next_push():
    s = graph_stream(check_finite=False)
    y = torch.randn(4000, device="cuda")
    outs = [s.push(y[i : i + 200]) for i in range(0, 4000, 200)]
    assert type(s._groups[0].step) is streaming._GraphStep
    assert len({o.data_ptr() for o in outs[-10:]}) == 1, "steady results share one preallocated buffer"
    assert outs[-1] is outs[-2] or torch.equal(outs[-2], outs[-1]), "the previous result is overwritten by the next push"
    assert outs[-1].device == s.device


# =========================================================================== captures: eager, kept, cached
def test_capture_at_construction_kept_across_reset_and_sizes(count_captures):
    """One capture (2 graphs) at construction; none in pushes, across reset() and after chunks of
    other sizes that come back to the same phase; one more for a new phase; frames exact."""
    s = graph_stream(chunk_size=400, check_finite=False)
    assert count_captures[0] == 2
    y = noise(16000, seed=3)
    for utt in range(3):
        s.reset()
        got = run_stream(s, y, 400)
        assert rel(got, offline(y, **REF)) <= TOL32
    assert count_captures[0] == 2, "reset() or pushes recaptured"
    parts, i = [], 0
    s.reset()
    for k in [400] * 6 + [133] + [400] * 6 + [67] + [400] * 30:
        if i >= 16000:
            break
        parts.append(s.push(torch.from_numpy(y[i : i + k]).cuda()).clone().cpu().numpy())
        i += k
    parts.append(s.flush().cpu().numpy())
    assert rel(np.concatenate(parts, -1), offline(y[:i], **REF)) <= TOL32
    assert count_captures[0] == 4, "phase 133 captured once; phase 0 re-entered without capture"


# =========================================================================== host synchronisations
@pytest.mark.parametrize("check_finite", [False, True])
@pytest.mark.parametrize("cuda_graph", [True, False], ids=["graph", "no-graph"])
def test_steady_pushes_do_not_synchronise(check_finite, cuda_graph):
    """Device-tensor chunks in the steady state: no synchronising CUDA call (sync debug mode "error"),
    with the default check_finite=True too (device chunks are not checked)."""
    s = supermel.StreamingMelSpectrogram(**REF, device="cuda", chunk_size=200, cuda_graph=cuda_graph, check_finite=check_finite)
    y = torch.randn(8000, device="cuda")
    for i in range(0, 2000, 200):
        s.push(y[i : i + 200])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(2000, 8000, 200):
            s.push(y[i : i + 200])
    finally:
        torch.cuda.set_sync_debug_mode("default")


# =========================================================================== pinned input reused by the caller
def test_pinned_buffer_refilled_right_after_push():
    """One pinned staging buffer refilled right after each push while the GPU is kept busy: push
    (default async_copy=False) returns only once its copy has read the buffer."""
    y = noise(8000, seed=4)
    s = graph_stream(check_finite=False)
    buf = torch.empty(200).pin_memory()
    parts = []
    for i in range(0, 8000, 200):
        torch.cuda._sleep(2_000_000)  # keep the stream busy (~1 ms): the copy queues behind it
        buf.copy_(torch.from_numpy(y[i : i + 200]))
        out = s.push(buf)
        buf.fill_(123.0)  # the application reuses its buffer at once
        parts.append(out.clone())
    parts.append(s.flush())
    assert isinstance(s.copy_done, torch.cuda.Event)
    assert rel(torch.cat(parts, -1), offline(y, **REF)) <= TOL32


def test_async_copy_with_copy_done():
    """async_copy=True: push returns at once; waiting for copy_done before refilling is enough."""
    y = noise(8000, seed=5)
    s = graph_stream(check_finite=False, async_copy=True)
    buf = torch.empty(200).pin_memory()
    parts = []
    for i in range(0, 8000, 200):
        torch.cuda._sleep(2_000_000)
        if s.copy_done is not None:
            s.copy_done.synchronize()
        buf.copy_(torch.from_numpy(y[i : i + 200]))
        parts.append(s.push(buf).clone())
    parts.append(s.flush())
    assert rel(torch.cat(parts, -1), offline(y, **REF)) <= TOL32


# =========================================================================== streams, threads, devices
def test_pushes_on_a_non_default_stream():
    st = torch.cuda.Stream()
    y = noise(8000, seed=6)
    with torch.cuda.stream(st):
        got = run_stream(graph_stream(check_finite=False), y, 200)
    assert rel(got, offline(y, **REF)) <= TOL32


def test_four_threads_capture_and_push_at_once():
    results: List[Any] = []

    def work(seed: int) -> None:
        try:
            y = noise(16000, seed=seed)
            got = run_stream(graph_stream(check_finite=False), y, 200)
            results.append(rel(got, offline(y, **REF)))
        except BaseException as exc:  # noqa: BLE001
            results.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [r for r in results if not (isinstance(r, float) and r <= TOL32)]
    assert len(results) == 4 and not bad, results


def test_inference_mode_inside_then_outside():
    y = noise(8000, seed=7)
    with torch.inference_mode():
        s = graph_stream(check_finite=False)
        parts = [s.push(torch.from_numpy(y[i : i + 200]).cuda()).clone() for i in range(0, 4000, 200)]
    parts += [s.push(torch.from_numpy(y[i : i + 200]).cuda()).clone() for i in range(4000, 8000, 200)]
    parts.append(s.flush())
    assert rel(torch.cat(parts, -1), offline(y, **REF)) <= TOL32


def test_module_on_another_device_than_the_stream():
    """A CPU module with device="cuda" (copied, the caller's left on the CPU); a GPU module without device."""
    y = noise(8000, seed=8)
    cpu = supermel.MelSpectrogram(**REF)
    s = supermel.StreamingMelSpectrogram(module=cpu, device="cuda", chunk_size=200, cuda_graph=True)
    assert s.device.type == "cuda" and cpu.spectrogram.window.device.type == "cpu"
    assert rel(run_stream(s, y, 200), offline(y, **REF)) <= TOL32
    gpu = supermel.MelSpectrogram(**REF, device="cuda")
    s2 = supermel.StreamingMelSpectrogram(module=gpu, chunk_size=200)
    assert s2.device.type == "cuda" and s2.module is gpu
    assert rel(run_stream(s2, y, 200), offline(y, **REF)) <= TOL32


@TWO_GPUS
@pytest.mark.parametrize("mode", ["numpy", "device", "other-device"])
def test_second_gpu_while_the_first_is_current(mode):
    """device="cuda:1" while cuda:0 is current: captured on cuda:1, replayed under its guard."""
    y = noise(8000, seed=9)
    with torch.cuda.device(0):
        s = graph_stream(device="cuda:1", check_finite=False)
        assert s.device == torch.device("cuda", 1)
        parts = []
        for i in range(0, 8000, 200):
            c = y[i : i + 200]
            x: Any = c if mode == "numpy" else torch.from_numpy(c).to("cuda:1" if mode == "device" else "cuda:0")
            out = s.push(x)
            if mode != "numpy":
                assert out.device == torch.device("cuda", 1)
            parts.append(out if isinstance(out, np.ndarray) else out.clone().cpu().numpy())
        f = s.flush()
        parts.append(f if isinstance(f, np.ndarray) else f.cpu().numpy())
        assert torch.cuda.current_device() == 0
    assert rel(np.concatenate(parts, -1), offline(y, **REF)) <= TOL32


@TWO_GPUS
def test_module_on_the_second_gpu_gives_the_device():
    mod = supermel.MelSpectrogram(**REF, device="cuda:1")
    with torch.cuda.device(0):
        s = supermel.StreamingMelSpectrogram(module=mod, chunk_size=200, cuda_graph=True)
    assert s.device == torch.device("cuda", 1) and s.module is mod
    y = noise(4000, seed=10)
    assert rel(run_stream(s, y, 200), offline(y, **REF)) <= TOL32


# =========================================================================== TF32
@pytest.mark.parametrize("backend", ["fft", "matmul"])
def test_offline_exact_with_tf32_on(backend, tf32):
    y = noise(16000, 2, seed=11)
    mod = supermel.MelSpectrogram(**REF, backend=backend, device="cuda")
    got = mod(torch.from_numpy(y).cuda())
    assert torch.backends.cuda.matmul.allow_tf32, "the host's setting is restored"
    assert rel(got, offline(y, **REF)) <= TOL32
    mfcc = supermel.MFCC(sr=16000, n_mfcc=20, n_fft=800, hop_length=200, n_mels=80, device="cuda")
    want = supermel.MFCC(sr=16000, n_mfcc=20, n_fft=800, hop_length=200, n_mels=80, dtype=torch.float64)(y.astype(np.float64))
    got_mfcc = mfcc(torch.from_numpy(y).cuda()).cpu().numpy()
    assert np.abs(got_mfcc - want).max() <= 1e-4 * np.abs(want).max()  # TF32 in the DCT: ~1e-3


@pytest.mark.parametrize("kw", [dict(chunk_size=200, cuda_graph=True), dict(chunk_size=200), {}], ids=["graph", "step", "general"])
def test_stream_exact_with_tf32_on(kw, tf32):
    """TF32 on at construction (capture) and at every push: frames still exact, the setting kept."""
    y = noise(16000, 4, seed=12)
    s = supermel.StreamingMelSpectrogram(**REF, num_streams=4, device="cuda", check_finite=False, **kw)
    got = run_stream(s, y, 200)
    assert torch.backends.cuda.matmul.allow_tf32
    assert rel(got, offline(y, **REF)) <= TOL32


def test_onnx_cuda_provider_without_tf32(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without CUDAExecutionProvider")
    from supermel import onnx as so

    module = supermel.MelSpectrogram(**REF)
    path = so.export_onnx(module, tmp_path / "mel.onnx")
    sess = so.inference_session(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert sess.get_providers()[0] == "CUDAExecutionProvider"
    assert sess.get_provider_options()["CUDAExecutionProvider"].get("use_tf32") in ("0", 0)
    y = noise(32000, 2, seed=13)
    (got,) = sess.run(None, {sess.get_inputs()[0].name: y})
    err = rel(got, offline(y, **REF))
    assert err <= 2e-6, f"relative error {err:.2e} on the CUDA provider (TF32 off)"
    step = so.export_streaming_step_onnx(module, tmp_path / "step.onnx", chunk_size=400)
    got_stream = so.run_streaming_onnx(step, module, y, chunk_size=400, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert rel(got_stream, offline(y, **REF)) <= 2e-6


# =========================================================================== cuFFT plan eviction
CHILD = r"""
import numpy as np, torch, supermel
REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
y = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
s = supermel.StreamingMelSpectrogram(**REF, device="cuda", chunk_size=200, cuda_graph=True, check_finite=False)
parts = [s.push(torch.from_numpy(y[i:i+200]).cuda()).clone() for i in range(0, 8000, 200)]
assert s._groups[0].step.kw["dft"] is not None, "the captured step uses the matrix-product DFT"
torch.backends.cuda.cufft_plan_cache.max_size = 4   # stands for 4096 distinct FFT shapes seen later
for n in range(5, 40):                               # other FFTs evict any plan (LRU; replays never touch one)
    torch.fft.rfft(torch.randn(n, 800, device="cuda"))
parts += [s.push(torch.from_numpy(y[i:i+200]).cuda()).clone() for i in range(8000, 16000, 200)]
parts.append(s.flush())
got = torch.cat(parts, -1).cpu().numpy().astype(np.float64)
want = supermel.MelSpectrogram(**REF, dtype=torch.float64)(y.astype(np.float64))
print("REL", float(np.linalg.norm(got - want) / np.linalg.norm(want)))
"""


def test_replays_after_the_plan_cache_churned():
    """Other FFTs of the process churn torch's cuFFT plan cache; the captured step has no FFT, so
    its replays stay exact (a child process: a replay on a freed plan could corrupt the context)."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(supermel.__file__)))
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("REL")]
    assert r.returncode == 0 and line, f"child rc {r.returncode}: {r.stderr[-2000:]}"
    assert float(line[0].split()[1]) <= TOL32
