"""CUDA-graph capture safety, checked on the CPU.

No GPU is needed: the operators that the captured streaming step and the
offline forward issue are recorded on the CPU and on the ``meta`` device, and
checked against what ``torch.cuda.graph`` capture requires.

What capture requires, and what is asserted here (:class:`CaptureChecker`):

* **no host synchronisation**: no operator that reads a device value on the host
  (``aten._local_scalar_dense``: ``.item()``, ``bool()``, ``float()``;
  ``aten.equal``, ``aten.is_nonzero``, ``aten.allclose``; anything torch tags
  ``data_dependent_output``), no operator whose output shape depends on the data
  (``aten.nonzero``, ``masked_select``, ``unique``, boolean indexing: torch's
  ``dynamic_output_shape`` tag), and no ``Tensor.numpy()`` / ``.tolist()``;
* **no host data on the device route**: no tensor argument or result on another
  device than the route's (a CPU tensor next to device tensors, ``.cpu()``,
  ``torch.from_numpy``), and no tensor made from host data
  (``torch.as_tensor(ndarray)``, ``torch.tensor([...])``: a host-to-device copy
  from pageable memory synchronises, which capture refuses);
* **static shapes**: the same operator sequence, shapes, strides and dtypes for
  any data (on ``meta`` there is no data at all: a step that completes there
  cannot depend on it);
* **no allocation outside the preallocated workspace** (the captured step
  only): every operator's result is one of the step's own buffers (the two
  ring-buffer tensors, the :class:`supermel._core.Workspace`) or a view of them
  or of the module's constants, and nothing writes into the constants.
  ``torch.cuda.graph`` would tolerate fixed-size temporaries (from the graph's
  private pool), but the step is designed without any, so none is allowed:
  the output the graph returns must be the same buffer for both captured
  parities. Temporaries *inside* a kernel (cuFFT's work area, a contiguous copy
  inside ``bmm``) are below the dispatcher and fixed-size; they are not seen
  and need not be.

The captured step is :class:`supermel.streaming._GraphStep`, exercised through
its own ``__init__`` and ``run`` with ``torch.cuda``'s stream and graph API
replaced by :class:`EmulatedGraph`: *capture* records the operators (under the
checker) and then undoes what they wrote (a real capture executes nothing);
*replay* re-issues exactly the recorded operators on the same tensors, as a
CUDA graph replays its kernels on the same addresses. On the CPU the replayed
stream must equal librosa; on ``meta`` (the device route: no data, any host
read raises) everything must still run.

The emulation (:class:`EmulatedCuda`) also stands in for ``torch.cuda.device``
(a stack of device guards), ``torch.cuda.Event`` and streams (with the device
each is created on), and records what each capture was asked and saw (its
stream, error mode, device guard, whether the process-wide capture lock was
held, grad and inference mode, the float32 matmul precision) and the guard in
force at each replay. The tests at the end check the step's contracts on the
CPU: captured once per shape (by ``warmup()`` or on arrival) and kept across
``reset()``; under the lock, on a private stream of the step's own device,
replayed under its guard; a host chunk copied straight into the ring buffer,
before the replay and outside the graph, and waited for when pinned (unless
``async_copy``); no FFT in the graph; full float32 precision at capture under
a TF32 setting; buffers usable inside and outside ``torch.inference_mode()``.

Negative controls inject a host synchronisation (and the other faults) into
the step and check that the same assertions fail.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import librosa
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import supermel
import supermel.streaming as streaming
from conftest import rel_err, white_noise

REF = dict(sr=16000, n_fft=800, hop_length=200, n_mels=80, fmin=55.0, fmax=7600.0)
_SRC = os.path.dirname(os.path.abspath(supermel.__file__)) + os.sep


# =========================================================================== the checker
class CaptureViolation(AssertionError):
    """Something CUDA-graph capture would refuse (or silently get wrong)."""


#: Operators that read device data on the host or whose result shape depends on the data
#: (also caught through torch's operator tags; listed so a change of tags cannot hide them).
HOST_SYNC_OPS = {
    "aten._local_scalar_dense",
    "aten.item",
    "aten.equal",
    "aten.is_nonzero",
    "aten.allclose",
    "aten.nonzero",
    "aten.nonzero_numpy",
    "aten.argwhere",
    "aten.masked_select",
    "aten.unique",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.unique_dim_consecutive",
    "aten.bincount",
    "aten._assert_scalar",
}
#: Python-level tensor methods that copy device data to the host.
HOST_READ_METHODS = {"item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__"}
#: Constructors that turn host data (lists, numpy arrays, scalars) into a tensor.
HOST_DATA_FUNCTIONS = {"tensor", "as_tensor", "asarray", "new_tensor", "from_numpy"}


def _storage_key(t: torch.Tensor) -> int:
    """Identity of a tensor's storage (views share it); works on meta tensors too."""
    return t.untyped_storage()._cdata


def _where() -> str:
    """``file:line (function)`` of the innermost supermel frame on the stack."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_filename.startswith(_SRC):
            return f"{os.path.relpath(f.f_code.co_filename, os.path.dirname(_SRC[:-1]))}:{f.f_lineno} ({f.f_code.co_name})"
        f = f.f_back
    return "(outside supermel)"


def _meta(t: torch.Tensor) -> Tuple[Any, ...]:
    return (tuple(t.shape), tuple(t.stride()), t.dtype, t.device.type)


@dataclass
class OpRecord:
    name: str  # e.g. "aten.mul.out"
    packet: str  # e.g. "aten.mul"
    tags: Set[str]
    inputs: List[Tuple[Any, ...]]
    outputs: List[Tuple[Any, ...]]
    out_keys: List[int]
    written_keys: List[int]
    where: str
    bool_index: bool = False
    # for replay
    call: Any = field(default=None, repr=False)


class CaptureChecker:
    """Record every operator issued inside ``with checker:`` and judge them.

    A :class:`TorchDispatchMode` sees every aten operator (what a CUDA graph
    would capture); a :class:`TorchFunctionMode` sees the Python-level calls
    that never reach the dispatcher (``.numpy()``, ``.tolist()``,
    ``torch.as_tensor(ndarray, device=...)``).

    ``keep_calls`` keeps the operators with their arguments (for
    :meth:`EmulatedGraph.replay`); ``undo_writes`` restores every storage an
    operator wrote to, on exit (a capture that records without executing).
    """

    def __init__(self, *, keep_calls: bool = False, undo_writes: bool = False) -> None:
        self.ops: List[OpRecord] = []
        self.host: List[str] = []  # Python-level host accesses
        self.errors: List[str] = []  # operators that raised (meta: a host read)
        self.keep_calls = keep_calls
        self.undo_writes = undo_writes
        self._snapshots: Dict[int, Tuple[Any, Any]] = {}
        self._stack = contextlib.ExitStack()

    # -- recording
    def __enter__(self) -> "CaptureChecker":
        checker = self

        class _Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                return checker._dispatch(func, args, kwargs or {})

        class _Function(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                flagged = checker._function(func, args, kwargs or {})
                try:
                    return func(*args, **(kwargs or {}))
                except Exception as e:  # on meta: the host read that was just flagged raises
                    if not flagged or isinstance(e, CaptureViolation):
                        raise
                    raise CaptureViolation(checker.report(device=None)) from e

        self._stack.enter_context(_Function())
        self._stack.enter_context(_Dispatch())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
        for storage, saved in self._snapshots.values():
            storage.copy_(saved)
        self._snapshots.clear()

    def _function(self, func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bool:
        """Record a Python-level host access; return whether ``func`` is one."""
        name = getattr(func, "__name__", "")
        if name in HOST_READ_METHODS and args and isinstance(args[0], torch.Tensor):
            self.host.append(f"Tensor.{name}() copies tensor data to the host, at {_where()}")
            return True
        if name in HOST_DATA_FUNCTIONS:
            data = (args[1] if len(args) > 1 else kwargs.get("data")) if name == "new_tensor" else (args[0] if args else kwargs.get("data"))
            if not isinstance(data, torch.Tensor):
                self.host.append(f"torch.{name}(<host data>) makes a tensor from host data (a synchronising copy on CUDA), at {_where()}")
                return True
        return False

    def _dispatch(self, func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        schema_args = func._schema.arguments
        written = []
        for i, a in enumerate(schema_args):
            v = args[i] if i < len(args) else kwargs.get(a.name)
            if a.alias_info is not None and a.alias_info.is_write and isinstance(v, torch.Tensor):
                written.append(v)
        if self.undo_writes:
            for t in written:
                key = _storage_key(t)
                if key not in self._snapshots and t.device.type != "meta":
                    storage = t.untyped_storage()
                    self._snapshots[key] = (storage, storage.clone())
        in_tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        where = _where()
        try:
            out = func(*args, **kwargs)
        except Exception as e:  # on meta: a host read of a tensor without data
            self.errors.append(f"{func} raised {type(e).__name__}: {e} at {where}")
            raise CaptureViolation(self.report(device=None)) from e
        out_tensors = [a for a in tree_flatten(out)[0] if isinstance(a, torch.Tensor)]
        indices = args[1] if str(func) == "aten.index.Tensor" and len(args) > 1 else []
        rec = OpRecord(
            name=str(func),
            packet=str(func.overloadpacket),
            tags={t.name for t in func.tags},
            inputs=[_meta(t) for t in in_tensors],
            outputs=[_meta(t) for t in out_tensors],
            out_keys=[_storage_key(t) for t in out_tensors],
            written_keys=[_storage_key(t) for t in written],
            where=where,
            bool_index=any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices),
        )
        if self.keep_calls:
            fresh = not {_storage_key(t) for t in out_tensors} <= {_storage_key(t) for t in in_tensors}
            rec.call = (func, args, kwargs, out_tensors if fresh else None)
        self.ops.append(rec)
        return out

    # -- judging
    def violations(
        self, *, device: Optional[str], workspace: Optional[Iterable[torch.Tensor]] = None, constants: Iterable[torch.Tensor] = ()
    ) -> List[str]:
        """What capture on ``device`` would refuse. With ``workspace``, also every
        result outside the workspace and the ``constants`` (an allocation) and
        every write into the constants."""
        found = list(self.errors) + list(self.host)
        for op in self.ops:
            sync = op.packet in HOST_SYNC_OPS or "data_dependent_output" in op.tags
            if "dynamic_output_shape" in op.tags and not (op.packet == "aten.index" and not op.bool_index):
                sync = True  # integer advanced indexing has a static shape; boolean masks do not
            if sync:
                found.append(f"{op.name}: host synchronisation / data-dependent shape, at {op.where}")
            if device is not None:
                others = sorted({m[3] for m in op.inputs + op.outputs if m[3] != device})
                if others:
                    found.append(f"{op.name}: tensors on {', '.join(others)} on the {device} route, at {op.where}")
        if workspace is not None:
            owned = {_storage_key(t) for t in workspace}
            const = {_storage_key(t) for t in constants} - owned
            for op in self.ops:
                for key, m in zip(op.out_keys, op.outputs):
                    if key not in owned and key not in const:
                        found.append(f"{op.name}: allocates {m[0]} {m[2]} outside the preallocated workspace, at {op.where}")
                if const & set(op.written_keys):
                    found.append(f"{op.name}: writes into a constant of the module, at {op.where}")
        return found

    def report(self, **kw: Any) -> str:
        found = self.violations(**kw)
        ops = "\n".join(f"    {op.name} {[m[0] for m in op.inputs]} -> {[m[0] for m in op.outputs]}  {op.where}" for op in self.ops)
        return f"{len(found)} capture violation(s):\n  " + "\n  ".join(found) + f"\n  operators recorded:\n{ops}"

    def assert_safe(self, **kw: Any) -> None:
        if self.violations(**kw):
            raise CaptureViolation(self.report(**kw))

    def signature(self) -> List[Tuple[Any, ...]]:
        """The operator sequence with shapes, strides, dtypes and devices (no data, no addresses)."""
        return [(op.name, tuple(op.inputs), tuple(op.outputs)) for op in self.ops]


# =========================================================================== emulated CUDA graphs
class EmulatedCuda(list):
    """The graphs captured (the list, in capture order) and what the CUDA API was asked.

    ``devices`` is the stack of device guards (``torch.cuda.device``) entered
    now; ``streams`` the streams created (with their device); ``events`` the
    events; ``timeline`` the guard, stream, event, capture and replay calls in
    order (and the aten operators, inside :class:`Timeline`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.devices: List[Any] = []
        self.streams: List["_Stream"] = []
        self.events: List["EmulatedEvent"] = []
        self.timeline: List[Tuple[Any, ...]] = []

    @property
    def current_device(self) -> Any:
        return self.devices[-1] if self.devices else "default"


_EMU: Optional[EmulatedCuda] = None  # the fixture's recorder, while a test runs


class EmulatedGraph:
    """Stands in for :class:`torch.cuda.CUDAGraph`: see the module docstring."""

    def __init__(self) -> None:
        self.capture: Optional[CaptureChecker] = None
        self.replays = 0
        self.capture_info: Dict[str, Any] = {}  # what the capture was asked and saw
        self.replay_devices: List[Any] = []  # the device guard in force at each replay

    def replay(self) -> None:
        assert self.capture is not None, "replay() before capture"
        self.replays += 1
        if _EMU is not None:
            self.replay_devices.append(_EMU.current_device)
            _EMU.timeline.append(("replay", _EMU.current_device))
        for op in self.capture.ops:
            func, args, kwargs, fresh = op.call
            out = func(*args, **kwargs)
            if fresh is not None:  # a temporary: the graph's private pool gives it the same memory each replay
                for kept, new in zip(fresh, [a for a in tree_flatten(out)[0] if isinstance(a, torch.Tensor)]):
                    kept.copy_(new)
        if _EMU is not None:
            _EMU.timeline.append(("replayed",))


class _Stream:
    def __init__(self, device: Any = None, *args: Any, current: bool = False, **kwargs: Any) -> None:
        self.device = None if device is None else torch.device(device)
        self.current = current
        if _EMU is not None and not current:
            _EMU.streams.append(self)

    def wait_stream(self, other: Any) -> None:
        pass


class EmulatedEvent:
    """Stands in for :class:`torch.cuda.Event`: records where it was recorded and waited for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.records: List[Any] = []
        self.syncs = 0
        if _EMU is not None:
            _EMU.events.append(self)

    def record(self, stream: Any = None) -> None:
        self.records.append(stream)
        if _EMU is not None:
            _EMU.timeline.append(("event.record", getattr(stream, "device", None)))

    def synchronize(self) -> None:
        self.syncs += 1
        if _EMU is not None:
            _EMU.timeline.append(("event.synchronize",))

    def query(self) -> bool:
        return True


class Timeline(TorchDispatchMode):
    """Appends every aten operator (name, devices of its tensor arguments, storage written) to ``emu.timeline``."""

    def __init__(self, emu: EmulatedCuda) -> None:
        super().__init__()
        self.emu = emu

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        self.emu.timeline.append(("op", str(func), tuple(t.device.type for t in tensors), _storage_key(args[0]) if tensors and args and isinstance(args[0], torch.Tensor) else None))
        return func(*args, **kwargs)


@pytest.fixture
def emulated_cuda(monkeypatch) -> EmulatedCuda:
    """Replace torch.cuda's stream, event, device-guard and graph API (what :class:`_GraphStep`
    and the stream's copies use) for the test; returns the graphs captured (an :class:`EmulatedCuda`)."""
    global _EMU
    emu = EmulatedCuda()

    @contextlib.contextmanager
    def graph(cuda_graph: EmulatedGraph, pool: Any = None, stream: Any = None, capture_error_mode: str = "global", **kwargs: Any) -> Any:
        cuda_graph.capture_info = dict(
            stream=stream,
            capture_error_mode=capture_error_mode,
            device=emu.current_device,
            locked=streaming._CAPTURE_LOCK.locked(),
            precision=torch.get_float32_matmul_precision(),
            grad=torch.is_grad_enabled(),
            inference=torch.is_inference_mode_enabled(),
        )
        emu.timeline.append(("capture", emu.current_device))
        checker = CaptureChecker(keep_calls=True, undo_writes=True)
        with checker:
            yield
        cuda_graph.capture = checker
        emu.append(cuda_graph)

    @contextlib.contextmanager
    def device(dev: Any) -> Any:
        dev = torch.device(dev) if not isinstance(dev, int) else dev
        emu.devices.append(dev)
        emu.timeline.append(("guard", dev))
        try:
            yield
        finally:
            emu.devices.pop()
            emu.timeline.append(("unguard", dev))

    monkeypatch.setattr(torch.cuda, "Stream", _Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _Stream(device, current=True))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", EmulatedGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "Event", EmulatedEvent)
    _EMU = emu
    yield emu
    _EMU = None


def graph_stream(device: str, *, chunk_size: int, num_streams: Optional[int], **kw: Any) -> supermel.StreamingMelSpectrogram:
    """A stream whose steady state is :class:`_GraphStep` on ``device`` (cpu, or meta for the device route).

    The constructor accepts ``cuda_graph=True`` only with a real CUDA device, so
    the flag is set afterwards: from there on the stream runs exactly as with
    ``device="cuda", cuda_graph=True`` (``_advance`` builds a ``_GraphStep``).
    """
    module = supermel.MelSpectrogram(**kw, check_finite=False, dtype=torch.float32).to(device)
    stream = supermel.StreamingMelSpectrogram(
        module=module, device=device, dtype=torch.float32, num_streams=num_streams, chunk_size=chunk_size, check_finite=False
    )
    stream.cuda_graph = True
    return stream


def step_buffers(step: Any) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """``(workspace, constants)`` of a steady-state step: the ring buffer and
    the :class:`Workspace` buffers it owns; the module constants it reads."""
    ws = step.kw["ws"]
    owned = list(step.segs) + [v for v in vars(ws).values() if isinstance(v, torch.Tensor)]
    constants = [v for v in step.kw.values() if isinstance(v, torch.Tensor)]
    return owned, constants


def check_graph_step(stream: Any, graphs: List[EmulatedGraph], device: str) -> Any:
    """The captures of the stream's ``_GraphStep``: two graphs, each capture-safe, one output buffer."""
    step = stream._groups[0].step
    assert type(step) is streaming._GraphStep, f"steady state is {type(step).__name__}, not the CUDA-graph step"
    assert len(graphs) == 2 and step.graphs == graphs, "one graph per ring-buffer parity"
    workspace, constants = step_buffers(step)
    # the device route holds no numpy arrays and runs torch kernels only
    assert not step.numpy and step.kw["ws"].k is supermel._core._TorchKernels
    for t in workspace + constants + list(step.frames) + list(step.tails) + list(step.heads) + list(step.kept):
        assert isinstance(t, torch.Tensor) and t.device.type == device, f"{type(t).__name__} on {getattr(t, 'device', None)}"
    for g in graphs:
        g.capture.assert_safe(device=device, workspace=workspace, constants=constants)
        assert g.capture.ops, "nothing captured"
    # both parities run the same operators on same-shaped buffers
    assert graphs[0].capture.signature() == graphs[1].capture.signature()
    # the matrix-product DFT: no cuFFT plan the graph would depend on
    assert not any("fft" in op.name for g in graphs for op in g.capture.ops), "an FFT in the captured step"
    dev = step.segs[0].device
    for g in graphs:
        info = g.capture_info
        # under the process-wide lock and the step's device guard, on a private stream of that device
        assert info["locked"] and info["device"] == dev and info["capture_error_mode"] == "thread_local"
        assert info["stream"] is not None and not info["stream"].current and info["stream"].device == dev
        assert not info["grad"] and not info["inference"] and info["precision"] == "highest"
        assert all(d == dev for d in g.replay_devices), f"replayed under the guard of {g.replay_devices}, not {dev}"
    ws = step.kw["ws"]
    assert _storage_key(step.out) in {_storage_key(ws.out), _storage_key(ws.mel)}, "the graphs' output is not the workspace's output buffer"
    return step


# =========================================================================== the captured step
#: (id, MelSpectrogram keywords, chunk_size, num_streams)
STEP_CONFIGS = [
    ("ref-fft-1hop", dict(REF, backend="fft"), 200, None),
    ("ref-matmul-3hops", dict(REF, backend="matmul"), 600, 3),
    ("reflect-power1", dict(sr=8000, n_fft=64, hop_length=16, n_mels=12, pad_mode="reflect", power=1.0, backend="fft"), 48, 2),
    # hop > n_fft / 2: the kept samples start before the next frame (offset > 0)
    ("offset-symmetric-power1.5", dict(sr=8000, n_fft=64, hop_length=48, win_length=40, n_mels=10, pad_mode="symmetric", power=1.5, backend="matmul"), 96, 2),
    # librosa's float64 filterbank: float32 power cast into a float64 buffer
    ("fb-float64", dict(REF, backend="fft", mel_dtype=np.float64), 400, 2),
]
STEP_IDS = [c[0] for c in STEP_CONFIGS]


def _librosa_kw(kw: Dict[str, Any]) -> Dict[str, Any]:
    kw = {k: v for k, v in kw.items() if k != "backend"}
    if "mel_dtype" in kw:
        kw["dtype"] = kw.pop("mel_dtype")
    return kw


@pytest.mark.parametrize("eager", [False, True], ids=["on-arrival", "warmup"])
@pytest.mark.parametrize("name, kw, chunk, streams", STEP_CONFIGS, ids=STEP_IDS)
def test_graph_step_on_cpu_equals_librosa(name, kw, chunk, streams, eager, emulated_cuda, rng):
    """_GraphStep captured and replayed (emulated) on the CPU: capture-safe, allocation-free, exact;
    captured when the stream reaches its steady state, or beforehand by warmup() (what the
    constructor calls with cuda_graph=True): the same two graphs either way."""
    n = 12 * chunk + chunk // 2  # ends with a partial chunk: the stream leaves the step
    y = white_noise(rng, (streams, n) if streams else (n,))
    stream = graph_stream("cpu", chunk_size=chunk, num_streams=streams, **kw)
    if eager:
        stream.warmup()
        assert len(emulated_cuda) == 2
    parts, steady, out_keys = [], 0, set()
    for i in range(0, n - chunk + 1, chunk):
        step = stream._groups[0].step
        out = stream.push(torch.from_numpy(y[..., i : i + chunk]))
        if step is not None:
            steady += 1
            out_keys.add(_storage_key(out))
        parts.append(out.clone().numpy())
    step = check_graph_step(stream, emulated_cuda, "cpu")
    assert steady >= 8 and [g.replays for g in emulated_cuda] == [(steady + 1) // 2, steady // 2]
    assert out_keys == {_storage_key(step.out)}, "every steady push returns the one preallocated output buffer"
    parts.append(stream.push(torch.from_numpy(y[..., n - chunk // 2 :])).numpy())  # another size: leaves the step
    parts.append(stream.flush().numpy())
    got = np.concatenate(parts, axis=-1)
    want = librosa.feature.melspectrogram(y=y, **_librosa_kw(kw))
    assert got.shape == want.shape and got.dtype == want.dtype
    assert rel_err(got, want) <= 2e-5


@pytest.mark.parametrize("name, kw, chunk, streams", STEP_CONFIGS + [("mag-eps", dict(REF, mag_eps=1e-9), 200, 2)], ids=STEP_IDS + ["mag-eps"])
def test_graph_step_on_meta_device(name, kw, chunk, streams, emulated_cuda):
    """The device route on ``meta`` (no data: any host read raises): capture-safe, and every
    steady push issues no host synchronisation, no host data and no allocation."""
    stream = graph_stream("meta", chunk_size=chunk, num_streams=streams, **kw)
    shape = (streams, chunk) if streams else (chunk,)
    pushes = 0
    for _ in range(12):
        rows = torch.empty(shape, device="meta")
        steady = stream._groups[0].step is not None
        with CaptureChecker() as push:  # before the step: reports a host read (meta raises) as a violation
            out = stream.push(rows)
        if not steady:
            continue
        workspace, constants = step_buffers(stream._groups[0].step)
        push.assert_safe(device="meta", workspace=workspace + [rows], constants=constants)
        assert out.device.type == "meta"
        pushes += 1
    check_graph_step(stream, emulated_cuda, "meta")
    assert pushes >= 6 and sum(g.replays for g in emulated_cuda) == pushes
    assert stream.flush().device.type == "meta"


@pytest.mark.parametrize("backend", ["fft", "matmul"])
def test_step_operators_do_not_depend_on_the_data(backend, emulated_cuda, rng):
    """The step's operator sequence (shapes, strides, dtypes) is the same for any samples
    and for both parities, and allocates nothing, call after call."""
    stream = graph_stream("cpu", chunk_size=400, num_streams=2, **dict(REF, backend=backend))
    for _ in range(6):
        stream.push(torch.from_numpy(white_noise(rng, (2, 400))))
    step = stream._groups[0].step
    workspace, constants = step_buffers(step)
    signatures, outputs = [], set()
    for data in (white_noise(rng, (2, 400)), np.zeros((2, 400), np.float32), np.full((2, 400), 1e30, np.float32), -white_noise(rng, (2, 400))):
        for i in (0, 1):
            step.tails[i].copy_(torch.from_numpy(data))
            with CaptureChecker() as checker:
                out = step.compute(i)
            checker.assert_safe(device="cpu", workspace=workspace, constants=constants)
            signatures.append(checker.signature())
            outputs.add((out.data_ptr(), out.shape, out.stride()))
    assert all(s == signatures[0] for s in signatures[1:])
    assert len(signatures[0]) >= 6
    # both parities return the same buffer: what _GraphStep returns after replaying either graph
    assert outputs == {(step.out.data_ptr(), step.out.shape, step.out.stride())}


# =========================================================================== the offline forward
HALF_HOP = dict(sr=16000, n_fft=512, hop_length=256, n_mels=40)  # hop = n_fft / 2, common for music
#: (id, keywords, n samples): every pad mode, both backends, center on and off, long and short
#: inputs (reflect/symmetric padding of a segment shorter than the padding folds an index built
#: on the device: inputs shorter than n_fft // 2 + 1, and with hop = n_fft / 2 and reflect every
#: length that is a multiple of the hop, whose right-padded tail is exactly pad samples long)
OFFLINE_CASES = [
    (f"{backend}-{'center' if center else 'nocenter'}-{pad_mode}-{n}", dict(REF, backend=backend, center=center, pad_mode=pad_mode), n)
    for backend in ("fft", "matmul")
    for center, pad_mode in [(True, "constant"), (True, "reflect"), (True, "symmetric"), (True, "edge"), (True, "linear_ramp"), (False, "constant")]
    for n in (4000, 300)
    if center or n >= REF["n_fft"]
] + [(f"half-hop-{pad_mode}-{n}", dict(HALF_HOP, pad_mode=pad_mode), n) for pad_mode in ("reflect", "symmetric") for n in (4000, 4096)]


def _offline_params() -> List[Any]:
    return [pytest.param(device, kw, n, id=f"{device}-{name}") for device in ("cpu", "meta") for name, kw, n in OFFLINE_CASES]


@pytest.mark.parametrize("device, kw, n", _offline_params())
def test_offline_forward_no_host_sync(device, kw, n):
    """MelSpectrogram(check_finite=False)(x) for (B, L) tensors: no host synchronisation,
    no data-dependent shape, no host data; on meta, nothing on another device."""
    module = supermel.MelSpectrogram(**kw, check_finite=False).to(device)
    x = torch.randn(2, n).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's "n_fft too large" for the short input
        with CaptureChecker() as checker:
            out = module(x)
    assert out.shape == (2, kw["n_mels"], module.spectrogram.num_frames(n)) and out.device.type == device
    checker.assert_safe(device=device)


# =========================================================================== negative controls
def _inject(monkeypatch, fault):
    """Make the steady-state step (``_Step.compute``, inherited by ``_GraphStep``) call ``fault(step, out)``."""
    original = streaming._Step.compute

    def compute(self, i):
        out = original(self, i)
        fault(self, out)
        return out

    monkeypatch.setattr(streaming._Step, "compute", compute)


#: fault injected into the step -> what the report must name
FAULTS = {
    "item": (lambda step, out: out.sum().item(), r"_local_scalar_dense|Tensor\.item"),
    "bool": (lambda step, out: bool(out.max() > 0), r"_local_scalar_dense|Tensor\.__bool__"),
    "nonzero": (lambda step, out: torch.nonzero(out), r"aten\.nonzero"),
    "mask": (lambda step, out: out[out > 0], r"aten\.index\.Tensor"),
    "to-host": (lambda step, out: out.cpu(), r"tensors on cpu|aten\._to_copy"),
    "numpy": (lambda step, out: out.detach().numpy(), r"Tensor\.numpy"),
    "host-data": (lambda step, out: torch.as_tensor(np.ones(3, np.float32), device=out.device), r"torch\.as_tensor"),
    "temporary": (lambda step, out: torch.mul(out, 2.0), r"aten\.mul\.Tensor: allocates .* outside the preallocated workspace"),
    "write-constant": (lambda step, out: step.kw["window"].mul_(1.0), r"writes into a constant"),
}


@pytest.mark.parametrize(
    "fault, device",
    # on the CPU route a CPU tensor is not foreign: the meta route catches "to-host"
    [(f, d) for f in FAULTS for d in ("cpu", "meta") if (f, d) != ("to-host", "cpu")],
)
def test_checker_catches_an_injected_fault(fault, device, emulated_cuda, monkeypatch):
    """Each fault injected into the captured step makes the capture checks fail (the same
    checks as the tests above: on meta, the pushes run under a checker as there)."""
    fn, message = FAULTS[fault]
    _inject(monkeypatch, fn)
    stream = graph_stream(device, chunk_size=200, num_streams=2, **REF)
    with pytest.raises(CaptureViolation, match=message) as caught:
        for _ in range(8):
            with CaptureChecker():
                stream.push(torch.empty((2, 200), device=device) if device == "meta" else torch.zeros(2, 200))
        check_graph_step(stream, emulated_cuda, device)
    assert "capture violation" in str(caught.value)


def test_checker_catches_documented_check_finite_sync():
    """check_finite=True costs one host synchronisation on a device (documented): the checker sees it."""
    module = supermel.MelSpectrogram(**REF, check_finite=True).to("meta")
    with pytest.raises(CaptureViolation, match=r"Tensor\.__bool__"):
        with CaptureChecker():
            module(torch.empty(2, 4000, device="meta"))


# =========================================================================== the GPU path's contracts (issue 14)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_warmup_captures_once_across_resets_and_sizes(device, emulated_cuda, rng):
    """warmup() (what the constructor calls with cuda_graph=True) captures the steady-state step
    before any push; pushes, reset() and re-entries after chunks of other sizes replay those
    graphs; a chunk sequence that leaves the stream at another phase captures that phase once."""
    stream = graph_stream(device, chunk_size=400, num_streams=2, **REF)
    stream.warmup()
    assert len(emulated_cuda) == 2 and all(g.replays == 0 for g in emulated_cuda)
    stream.warmup()  # nothing new
    assert len(emulated_cuda) == 2
    sizes = [400] * 6 + [133] + [400] * 6 + [67] + [400] * 6  # phases 0, 133 (mod 200), 0 again
    for utt in range(3):
        stream.reset()
        n = sum(sizes)
        y = white_noise(rng, (2, n))
        parts, i = [], 0
        for k in sizes:
            chunk = torch.empty((2, k), device="meta") if device == "meta" else torch.from_numpy(y[:, i : i + k])
            out = stream.push(chunk)
            parts.append(out.clone() if device == "cpu" else out)
            i += k
        parts.append(stream.flush())
        if device == "cpu":
            got = torch.cat(parts, -1).numpy()
            assert rel_err(got, librosa.feature.melspectrogram(y=y, **REF)) <= 2e-5
        assert len(emulated_cuda) == 4, f"utterance {utt}: {len(emulated_cuda)} graphs captured (2 phases x 2 parities expected)"
    assert sum(g.replays for g in emulated_cuda) >= 3 * 14
    for g in emulated_cuda:
        assert g.capture_info["locked"] and g.capture_info["device"] == torch.device(device)


@pytest.mark.parametrize("async_copy", [False, True])
@pytest.mark.parametrize("pinned", [False, True])
def test_host_chunk_goes_straight_into_the_step(async_copy, pinned, emulated_cuda, monkeypatch):
    """A host chunk pushed to a device stream (meta) in the steady state: one copy from the host
    straight into the ring buffer, before the replay and outside the graph, then the copy event;
    push waits for that event when the chunk is pinned, unless async_copy=True."""
    stream = graph_stream("meta", chunk_size=200, num_streams=2, **REF)
    stream.async_copy = async_copy
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: pinned and self.device.type == "cpu")
    for _ in range(8):
        stream.push(torch.empty((2, 200), device="meta"))
    step = stream._groups[0].step
    assert type(step) is streaming._GraphStep
    tails = {_storage_key(t) for t in step.tails}
    emulated_cuda.timeline.clear()
    chunk = torch.zeros(2, 200)
    with Timeline(emulated_cuda):
        out = stream.push(chunk)
    assert out is step.out
    events = [e for e in emulated_cuda.timeline if e[0] != "op" or e[1].startswith("aten.copy_")]
    host_copies = [e for e in events if e[0] == "op" and "cpu" in e[2]]
    assert len(host_copies) == 1 and host_copies[0][3] in tails, "the chunk is copied once, into the ring buffer"
    names = [e[0] if e[0] != "op" else ("host copy" if "cpu" in e[2] else "copy") for e in events]
    start = names.index("guard")
    want = ["guard", "host copy", "event.record", "replay"]
    assert names[start : start + 4] == want, names
    assert names.count("event.synchronize") == (1 if pinned and not async_copy else 0)
    if "event.synchronize" in names:
        assert names.index("event.synchronize") > names.index("replay")
    assert stream.copy_done is emulated_cuda.events[0] and stream.copy_done.records[-1].device == torch.device("meta")
    # the graph itself holds no host tensor: the copy is not captured
    for g in emulated_cuda:
        assert all(m[3] == "meta" for op in g.capture.ops for m in op.inputs + op.outputs)


def test_device_chunks_need_no_event_and_no_check(emulated_cuda):
    """Chunks already on the device: no copy event, and check_finite=True (the default) issues
    no host read in the steady state (the check is for host data)."""
    stream = graph_stream("meta", chunk_size=200, num_streams=2, **REF)
    stream.check_finite = True
    for _ in range(12):
        rows = torch.empty((2, 200), device="meta")
        steady = stream._groups[0].step is not None
        with CaptureChecker() as push:
            stream.push(rows)
        if steady:
            workspace, constants = step_buffers(stream._groups[0].step)
            push.assert_safe(device="meta", workspace=workspace + [rows], constants=constants)
    assert stream.copy_done is None and not emulated_cuda.events


def test_capture_and_replay_under_the_streams_device(emulated_cuda):
    """Another device current at construction and at every push: capture and replay run under the
    guard of the stream's device, the capture on a stream created on that device."""
    stream = graph_stream("meta", chunk_size=200, num_streams=None, **REF)
    other = torch.device("cuda", 7)
    with torch.cuda.device(other):  # the emulated guard: "cuda:7" is current
        stream.warmup()
        for _ in range(8):
            stream.push(torch.empty(200, device="meta"))
    assert len(emulated_cuda) == 2
    for g in emulated_cuda:
        assert g.capture_info["device"] == torch.device("meta")
        assert g.capture_info["stream"].device == torch.device("meta")
        assert g.replay_devices and set(g.replay_devices) == {torch.device("meta")}
    assert [s.device for s in emulated_cuda.streams] == [torch.device("meta")], "one private capture stream, on the stream's device"


def test_concurrent_captures_are_serialised(emulated_cuda, monkeypatch):
    """Streams built in several threads at once capture one at a time (the process-wide lock)."""
    import threading
    import time

    active, peak = [0], [0]
    capture = torch.cuda.graph

    @contextlib.contextmanager
    def slow_graph(*args: Any, **kwargs: Any) -> Any:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        try:
            with capture(*args, **kwargs):
                yield
        finally:
            active[0] -= 1

    monkeypatch.setattr(torch.cuda, "graph", slow_graph)
    errors: List[BaseException] = []

    def build() -> None:
        try:
            graph_stream("cpu", chunk_size=200, num_streams=None, **dict(REF, n_fft=400)).warmup()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(emulated_cuda) == 8 and peak[0] == 1


@pytest.mark.parametrize("built_inside", [True, False])
def test_graph_step_inference_mode_inside_and_outside(built_inside, emulated_cuda, rng):
    """The captured step built inside torch.inference_mode() (or outside) serves pushes in both modes."""
    y = white_noise(rng, (2, 8000))
    stream = graph_stream("cpu", chunk_size=200, num_streams=2, **REF)
    parts = []
    with torch.inference_mode(built_inside):
        stream.warmup()
        parts += [stream.push(torch.from_numpy(y[:, i : i + 200])).clone() for i in range(0, 4000, 200)]
    with torch.inference_mode(not built_inside):
        parts += [stream.push(torch.from_numpy(y[:, i : i + 200])).clone() for i in range(4000, 8000, 200)]
    parts.append(stream.flush())
    assert len(emulated_cuda) == 2
    assert rel_err(torch.cat(parts, -1).numpy(), librosa.feature.melspectrogram(y=y, **REF)) <= 2e-5


# --------------------------------------------------------------------------- TF32
_FP32_GET = getattr(torch._C, "_get_fp32_precision_getter", None)
_FP32_SET = getattr(torch._C, "_set_fp32_precision_setter", None)


def precision_state() -> Tuple[Any, ...]:
    """torch's float32 matmul settings: the legacy summary (or "mixed") and the per-backend flags."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:
        legacy = "mixed"
    flags = () if _FP32_GET is None else (_FP32_GET("cuda", "matmul"), _FP32_GET("mkldnn", "matmul"))
    return (legacy,) + flags


def full_precision(state: Tuple[Any, ...]) -> bool:
    return state[0] == "highest" and all(f in ("none", "ieee") for f in state[1:])


@pytest.fixture
def tf32_on():
    """A host program's global TF32 setting (legacy API) for the test; torch's defaults restored after."""
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision("highest")
    if _FP32_SET is not None:
        _FP32_SET("cuda", "matmul", "none")
        _FP32_SET("mkldnn", "matmul", "none")


class MatmulPrecisionSpy(TorchFunctionMode):
    """Records torch's float32 matmul settings at every matrix product issued."""

    NAMES = {"matmul", "mm", "bmm", "__matmul__", "__rmatmul__", "addmm", "baddbmm", "einsum", "linear", "dot"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Tuple[str, Tuple[Any, ...]]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if getattr(func, "__name__", "") in self.NAMES:
            self.seen.append((func.__name__, precision_state()))
        return func(*args, **(kwargs or {}))


def test_capture_in_full_precision_under_a_tf32_setting(tf32_on, emulated_cuda, rng):
    """With torch.set_float32_matmul_precision("high"), the graphs are captured (and warmed up) in
    full float32 precision, and the host's setting is back once the stream is built and pushing."""
    before = precision_state()
    assert not full_precision(before)
    stream = graph_stream("cpu", chunk_size=200, num_streams=2, **REF)
    with MatmulPrecisionSpy() as spy:
        stream.warmup()
    assert spy.seen and all(full_precision(p) for _, p in spy.seen), spy.seen
    assert all(g.capture_info["precision"] == "highest" for g in emulated_cuda)
    assert precision_state() == before
    y = white_noise(rng, (2, 4000))
    parts = [stream.push(torch.from_numpy(y[:, i : i + 200])).clone() for i in range(0, 4000, 200)] + [stream.flush()]
    assert precision_state() == before
    assert rel_err(torch.cat(parts, -1).numpy(), librosa.feature.melspectrogram(y=y, **REF)) <= 2e-5


def test_uncaptured_device_step_in_full_precision(tf32_on, monkeypatch):
    """The device route without a graph (chunk_size on meta, the torch kernels of the CUDA step):
    every product of every push runs in full precision, the host's setting restored after each."""
    monkeypatch.setattr(streaming, "CPU_EXECUTOR", "torch")
    before = precision_state()
    module = supermel.MelSpectrogram(**REF, backend="matmul").to("meta")
    stream = supermel.StreamingMelSpectrogram(module=module, chunk_size=400, num_streams=2)
    with MatmulPrecisionSpy() as spy:
        for _ in range(10):
            stream.push(torch.empty((2, 400), device="meta"))
        assert type(stream._groups[0].step) is streaming._Step and not stream._groups[0].step.numpy
        stream.flush()
    assert len(spy.seen) >= 10 and all(full_precision(p) for _, p in spy.seen), spy.seen
    assert precision_state() == before
