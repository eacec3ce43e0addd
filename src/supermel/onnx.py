"""ONNX export of the real-valued mel front end: offline graphs and the streaming step.

Why a separate route
--------------------
ONNX runtimes handle spectrograms badly: exporting ``torch.stft`` fails on
complex types, onnxruntime's CPU ``STFT`` kernel is 100-750x slower than torch
and its CUDA provider has none. The graphs written here therefore compute the
DFT as a real matrix product, ``frames @ dft`` with the windowed ``[cos | -sin]``
basis of :class:`supermel.Spectrogram` (``backend="matmul"``), followed by
``re**2 + im**2`` and the mel filterbank product: no ``STFT``/``DFT`` node and
no complex tensor anywhere (checked after every export, see
:func:`graph_problems`).

Exporter
--------
Both torch exporters were tried with torch 2.13. The TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) fails on this model: it cannot
export ``Tensor.unfold`` on an input whose length is dynamic ("ONNX export of
operator Unfold, input size not accessible"), and tracing outside a compiler
bakes the eager CPU fast path (cache-sized blocks chosen from the traced
length) into the graph. The ``torch.export``-based exporter
(``dynamo=True``, which needs ``onnxscript``) traces with symbolic shapes, runs
the package's compiled path (one dense product, no in-place ops) and gives a
graph that is exact for every length and batch size; it is the one used.

Entry points
------------
- :func:`export_onnx`: ``(batch, n_samples)`` float32 -> ``(batch, n_mels, n_frames)``
  (or ``(batch, 1 + n_fft // 2, n_frames)`` for a :class:`~supermel.Spectrogram`),
  librosa's ``center=True`` padding in the graph, dynamic axes by default.
- :func:`export_streaming_step_onnx`: the steady-state step of
  :func:`supermel.streaming.static_step` with the state as an explicit input
  and output; :func:`streaming_step_layout`, :func:`initial_state`,
  :func:`right_padding` and :func:`run_streaming_onnx` say and do how to stream
  with it so that the frames equal the offline (librosa) frames.

``onnx``, ``onnxscript`` and ``onnxruntime`` are imported inside the functions
(``pip install 'supermel[onnx]'``); importing :mod:`supermel` does not need them.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import _core
from ._errors import ParameterError, SupermelError
from .modules import MelSpectrogram, Spectrogram
from .streaming import StreamingMelSpectrogram, static_step

__all__ = [
    "export_onnx",
    "export_streaming_step_onnx",
    "StreamingStepLayout",
    "streaming_step_layout",
    "initial_state",
    "right_padding",
    "run_streaming_onnx",
    "inference_session",
    "session_providers",
    "graph_problems",
    "FORBIDDEN_OPS",
]

PathLike = Union[str, "os.PathLike[str]"]
Module = Union[MelSpectrogram, Spectrogram]

#: Operators that must not appear in an exported graph: spectral kernels the
#: runtimes implement slowly or not at all (onnxruntime's contrib Rfft/Irfft included).
FORBIDDEN_OPS = frozenset({"STFT", "DFT", "Rfft", "Irfft", "FFT", "IFFT"})

_INSTALL = "pip install 'supermel[onnx]'"


# --------------------------------------------------------------------------- dependencies
def _require(*names: str) -> List[Any]:
    """Import the optional packages ``names``; ParameterError naming the fix when one is missing."""
    mods, missing = [], []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ParameterError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which are not installed: {_INSTALL}"
        )
    return mods


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and its 'torchvision is not installed' log lines."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- module handling
def _unwrap(stream_or_module: Any, *, what: str) -> Module:
    if isinstance(stream_or_module, StreamingMelSpectrogram):
        return stream_or_module.module
    if isinstance(stream_or_module, (MelSpectrogram, Spectrogram)):
        return stream_or_module
    raise ParameterError(
        f"{what} takes a supermel.MelSpectrogram or supermel.Spectrogram"
        + (" (or a StreamingMelSpectrogram)" if "stream" in what else "")
        + f", not {type(stream_or_module).__name__}; for a front-end preset pass its .core module "
        "(the mel spectrogram; the preset's own pre- and post-processing is not exported)"
    )


def _spec(module: Module) -> Spectrogram:
    return module.spectrogram if isinstance(module, MelSpectrogram) else module


def _matmul_twin(module: Module) -> Module:
    """A float32 CPU copy of ``module`` whose DFT is the matrix product (``backend="matmul"``).

    A module already on the matmul route is copied as it is (its buffers cast to
    float32 exactly as a float32 module rounds its float64 constants). For
    ``backend="fft"`` an equivalent matmul module is built from the same
    configuration by the same constructor, reusing the module's own window and
    filterbank values (so a window or filterbank loaded from a state dict is
    kept); the DFT basis comes from :class:`~supermel.Spectrogram`'s one
    implementation.
    """
    spec = _spec(module)
    if spec.backend == "matmul":
        twin = copy.deepcopy(module)
    else:
        window_spec: Any = spec._window_spec
        win_length = spec.win_length
        probe = Spectrogram(n_fft=spec.n_fft, win_length=win_length, window=window_spec, dtype=torch.float64, backend="fft")
        if not torch.equal(probe.window.to(spec.window.dtype), spec.window.detach().cpu()):
            # The buffer no longer follows the spec (loaded or edited): use its values.
            window_spec, win_length = spec.window.detach().cpu().double().numpy(), spec.n_fft
        kw = dict(
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            win_length=win_length,
            window=window_spec,
            center=spec.center,
            pad_mode=spec.pad_mode,
            power=spec.power,
            backend="matmul",
            check_finite=False,
            mag_eps=spec.mag_eps,
            pad=spec.pad,
            dtype=spec.window.dtype,
        )
        if isinstance(module, MelSpectrogram):
            twin = MelSpectrogram(sr=module.sr, fb=module.mel_scale.fb.detach().cpu().numpy(), **kw)
        else:
            twin = Spectrogram(**kw)
    return twin.to(device="cpu", dtype=torch.float32).eval().requires_grad_(False)


def _check_padding(spec: Spectrogram) -> None:
    """Refuse the configurations whose librosa padding the graph (or the streaming helpers) cannot reproduce.

    librosa pads the head and the tail segment of a long signal separately; the
    tail segment has at least ``n_fft - hop_length`` samples. Whole-signal
    padding equals librosa's when that segment is long enough for the mode
    (``pad + 1`` samples for reflect, ``pad`` for symmetric); otherwise numpy
    wraps for some lengths (e.g. n_fft 512, hop 256, reflect: every length that
    is a multiple of 256).
    """
    need = _core.left_context(spec.pad, spec.pad_mode)
    if spec.pad and spec.pad_mode in ("reflect", "symmetric") and spec.n_fft - spec.hop_length < need:
        raise ParameterError(
            f"pad_mode={spec.pad_mode!r} with n_fft={spec.n_fft}, hop_length={spec.hop_length} and {spec.pad} samples of "
            f"padding is not exportable: librosa then pads tail segments shorter than {need} samples, which numpy wraps "
            f"for some lengths; use pad_mode='constant' or a hop_length <= {spec.n_fft - need}"
        )


def _min_length(spec: Spectrogram) -> int:
    """Shortest input the exported graph reproduces librosa for."""
    if spec.pad == 0:
        return spec.n_fft
    return max(1, _core.left_context(spec.pad, spec.pad_mode), spec.n_fft - 2 * spec.pad)


class _OfflineGraph(nn.Module):
    """``(B, L)`` -> ``(B, n_mels, T)``: what :func:`export_onnx` traces.

    A thin wrapper over the module's tensor path: ``mel_tf`` (``power_tf`` for a
    Spectrogram) for constant padding; for the other modes the padding is built
    from the whole signal with :func:`supermel._core.pad_left` / ``pad_right``
    (equal to librosa's head/tail padding under :func:`_check_padding`, and free
    of the length-dependent Python branches that would be frozen into a graph),
    then ``mel_from_padded`` (``power_from_padded``).
    """

    def __init__(self, module: Module) -> None:
        super().__init__()
        self.module = module
        self.spec = _spec(module)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        mel = isinstance(self.module, MelSpectrogram)
        if spec.pad == 0 or spec.pad_mode == "constant":
            return self.module.mel_tf(y) if mel else spec.power_tf(y).transpose(-1, -2)
        z = torch.cat([_core.pad_left(y, spec.pad, spec.pad_mode), y, _core.pad_right(y, spec.pad, spec.pad_mode)], dim=-1)
        return self.module.mel_from_padded(z) if mel else spec.power_from_padded(z).transpose(-1, -2)


class _StepGraph(nn.Module):
    """``state (S, K), chunk (S, C)`` -> ``new_state (S, K), frames (S, n, C // hop)``: :func:`static_step`, offset 0."""

    def __init__(self, module: Module) -> None:
        super().__init__()
        self.module = module

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        if isinstance(self.module, MelSpectrogram):
            return self.module.mel_from_padded(z)
        return self.module.power_from_padded(z).transpose(-1, -2)

    def forward(self, state: torch.Tensor, chunk: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return static_step(self._frames, state, chunk)


# --------------------------------------------------------------------------- graph checks
def graph_problems(model: Any) -> List[str]:
    """What makes an ONNX model unfit as a complex-free front end (empty list: fit).

    Looks for :data:`FORBIDDEN_OPS` (in the graph, its subgraphs and local
    functions) and for complex element types in inputs, outputs, initializers,
    inferred intermediate values, ``Cast`` targets and constants.

    Parameters
    ----------
    model : onnx.ModelProto, str or path-like
        A model or the path of one.

    Returns
    -------
    list of str
        One message per problem; empty when the graph is fit.

    Examples
    --------
    >>> import onnx
    >>> from onnx import helper, TensorProto
    >>> from supermel.onnx import graph_problems
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    >>> graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    >>> graph_problems(helper.make_model(graph))
    []
    """
    (onnx,) = _require("onnx")
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the rest is still checked
        pass
    complex_types = {onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128}
    problems: List[str] = []

    def check_graph(graph: Any, where: str) -> None:
        for v in list(graph.input) + list(graph.output) + list(graph.value_info):
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in complex_types:
                problems.append(f"{where}: value {v.name!r} is complex")
        for t in graph.initializer:
            if t.data_type in complex_types:
                problems.append(f"{where}: initializer {t.name!r} is complex")
        for node in graph.node:
            check_node(node, where)

    def check_node(node: Any, where: str) -> None:
        if node.op_type in FORBIDDEN_OPS:
            problems.append(f"{where}: node {node.name!r} is a {node.op_type} op ({node.domain or 'ai.onnx'})")
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i in complex_types:
                problems.append(f"{where}: node {node.name!r} casts to a complex type")
            if attr.HasField("t") and attr.t.data_type in complex_types:
                problems.append(f"{where}: node {node.name!r} holds a complex constant")
            if attr.HasField("g"):
                check_graph(attr.g, f"{where}/{node.name}")
            for g in attr.graphs:
                check_graph(g, f"{where}/{node.name}")

    check_graph(model.graph, "graph")
    for fn in model.functions:
        for node in fn.node:
            check_node(node, f"function {fn.name}")
    return problems


def _export(
    wrapper: nn.Module,
    args: Tuple[torch.Tensor, ...],
    path: str,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Any,
    opset: Optional[int],
    dim_names: Sequence[Sequence[Optional[str]]],
) -> None:
    """Export with the torch.export-based exporter, then check and tidy the file."""
    onnx, _ = _require("onnx", "onnxscript")
    kw: dict = {}
    if opset is not None:
        if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or opset < 18:
            raise ParameterError(f"opset={opset!r} must be an integer >= 18 (the dynamo exporter's minimum) or None")
        kw["opset_version"] = int(opset)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ParameterError(f"cannot write {path!r}: the folder {directory!r} does not exist")
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(
                wrapper,
                args,
                path,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
                **kw,
            )
    except ParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the package's error type
        raise SupermelError(f"torch.onnx.export (dynamo=True) failed for {type(wrapper).__name__}: {exc}") from exc
    model = onnx.load(path)
    # Name the output axes ('batch', 'n_frames') instead of the exporter's expressions.
    for value, names in zip(model.graph.output, dim_names):
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            if name is not None and not dim.HasField("dim_value"):
                dim.dim_param = name
    problems = graph_problems(model)
    if problems:
        raise SupermelError("the exported graph is not complex-free: " + "; ".join(problems))
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _verify(path: str, feeds: dict, want: Sequence[torch.Tensor], *, tol: float = 1e-4) -> None:
    """Run the file once with onnxruntime (CPU) and compare with the torch result."""
    (ort,) = _require("onnxruntime")
    sess = _session(path, ort)
    got = sess.run(None, {k: v.numpy() for k, v in feeds.items()})
    for name, g, w in zip((o.name for o in sess.get_outputs()), got, want):
        w = w.detach().numpy()
        if g.shape != w.shape:
            raise SupermelError(f"exported graph check: output {name!r} has shape {g.shape}, torch gives {w.shape}")
        den = float(np.linalg.norm(w.astype(np.float64)))
        err = float(np.linalg.norm(g.astype(np.float64) - w)) / (den or 1.0)
        if not err <= tol:
            raise SupermelError(f"exported graph check: output {name!r} differs from torch (relative error {err:.3g} > {tol:g})")


def _session(path: str, ort: Any, providers: Optional[Sequence[Any]] = None) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=session_providers(providers))


def session_providers(providers: Optional[Sequence[Any]] = None) -> List[Any]:
    """onnxruntime execution providers for the graphs written here, TF32 off.

    ``providers`` as ``onnxruntime.InferenceSession`` takes them (names, or
    ``(name, options)`` pairs); ``None``: the CPU provider. onnxruntime's CUDA
    provider computes float32 products in TF32 on Ampere and newer GPUs by
    default (``use_tf32`` is on), which costs the graphs their exactness
    (relative error ~1e-4 instead of ~3e-7): ``"CUDAExecutionProvider"`` gets
    ``{"use_tf32": 0}`` unless its options say otherwise.

    Parameters
    ----------
    providers : sequence of str or (str, dict) or None
        Provider names or ``(name, options)`` pairs.

    Returns
    -------
    list
        For ``onnxruntime.InferenceSession(..., providers=...)``.

    Examples
    --------
    >>> from supermel.onnx import session_providers
    >>> session_providers()
    ['CPUExecutionProvider']
    >>> session_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'use_tf32': 0}), 'CPUExecutionProvider']
    """
    if providers is None:
        return ["CPUExecutionProvider"]
    out: List[Any] = []
    for p in providers:
        name, options = (p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
        if name == "CUDAExecutionProvider":
            options.setdefault("use_tf32", 0)
        out.append((name, options) if options else name)
    return out


def inference_session(path: PathLike, *, providers: Optional[Sequence[Any]] = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of a graph written here (one intra-op thread),
    with :func:`session_providers` (TF32 off for the CUDA provider; default the CPU provider),
    e.g. ``inference_session("mel.onnx", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])``.

    Parameters
    ----------
    path : str or path-like
        An ONNX file written by :func:`supermel.export_onnx` or :func:`supermel.export_streaming_step_onnx`.
    providers : sequence or None
        As :func:`session_providers` (default: the CPU provider).

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    supermel.ParameterError
        onnxruntime is not installed (the message gives the ``pip install`` command).

    Examples
    --------
    >>> import os, tempfile, numpy as np, supermel
    >>> from supermel.onnx import inference_session
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> path = supermel.export_onnx(mel, os.path.join(tempfile.mkdtemp(), "mel.onnx"))
    >>> session = inference_session(path)
    >>> session.run(None, {session.get_inputs()[0].name: np.zeros((1, 16000), np.float32)})[0].shape
    (1, 80, 81)
    """
    (ort,) = _require("onnxruntime")
    return _session(os.fspath(path), ort, providers)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive integer")
    return int(value)


# --------------------------------------------------------------------------- offline export
def export_onnx(
    module: Module,
    path: PathLike,
    *,
    n_samples: Optional[int] = None,
    batch: Optional[int] = None,
    dynamic: bool = True,
    opset: Optional[int] = None,
    verify: bool = True,
) -> str:
    """Export a :class:`~supermel.MelSpectrogram` (or :class:`~supermel.Spectrogram`) to an ONNX file.

    The graph is real-valued end to end: librosa's padding, framing, the DFT as
    the matrix product ``frames @ dft`` (the module's ``backend="matmul"``
    route), ``re**2 + im**2``, the power and the filterbank product. A module
    on ``backend="fft"`` is exported through an equivalent matmul module built
    from its configuration, its window and its filterbank; the module itself is
    not changed. The exporter is torch's ``torch.export``-based one
    (``dynamo=True``; the TorchScript exporter cannot export the framing with a
    dynamic length, see the module docstring).

    Parameters
    ----------
    module : MelSpectrogram or Spectrogram
        Any dtype or device; the graph is float32.
    path : str or path-like
        Where to write the model (one self-contained file, no external data).
    n_samples, batch : int, optional
        With ``dynamic=True`` they only shape the example input used for tracing
        (defaults: ``max(2 n_fft, 8 hop_length)`` samples, batch 2). With
        ``dynamic=False`` they are the fixed input shape (``n_samples`` required,
        ``batch`` default 1).
    dynamic : bool
        Dynamic batch and length axes (input ``y: (batch, n_samples)``, output
        ``mel: (batch, n_mels, n_frames)``).
    opset : int >= 18, optional
        ONNX opset; default the exporter's (20 with torch 2.13).
    verify : bool
        Run the written file once with onnxruntime (CPU provider) on the noise
        example input and compare with the module's torch path (its librosa
        padding included; relative error <= 1e-4).

    Returns
    -------
    str: the path written.

    Input validity
    --------------
    The graph reproduces librosa for every length ``n_samples >= n_min``:
    ``n_fft`` with ``center=False``; 1 with constant, edge and linear_ramp
    padding; ``n_fft // 2 + 1`` with reflect and ``n_fft // 2`` with symmetric
    padding (on shorter signals numpy wraps the reflection; the graph does
    not). The dynamic length axis is declared with that minimum. The input is
    float32 audio; the graph makes no finiteness check.

    Raises
    ------
    ParameterError
        Missing packages (``pip install 'supermel[onnx]'``), an unsupported
        module, a padding librosa applies in a way the graph cannot reproduce
        (reflect with ``hop_length > n_fft - pad - 1``, symmetric with
        ``hop_length > n_fft - pad``; ``pad = n_fft // 2`` when centred), or
        inconsistent shapes.
    SupermelError
        The exporter failed, or the written graph is not complex-free or does
        not match torch.

    Examples
    --------
    >>> import os, tempfile, numpy as np, supermel
    >>> from supermel.onnx import inference_session
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> path = supermel.export_onnx(mel, os.path.join(tempfile.mkdtemp(), "mel.onnx"))
    >>> session = inference_session(path)
    >>> x = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    >>> out = session.run(None, {session.get_inputs()[0].name: x})[0]
    >>> out.shape, bool(np.abs(out - mel(x)).max() <= 1e-5 * mel(x).max())
    ((2, 80, 81), True)
    """
    _require("onnx", "onnxscript", *(("onnxruntime",) if verify else ()))
    module = _unwrap(module, what="export_onnx")
    if not isinstance(dynamic, bool):
        raise ParameterError(f"dynamic={dynamic!r} must be True or False")
    spec = _spec(module)
    _check_padding(spec)
    n_min = _min_length(spec)
    if dynamic:
        n_samples = max(2 * spec.n_fft, 8 * spec.hop_length, n_min) if n_samples is None else _positive_int(n_samples, "n_samples")
        batch = 2 if batch is None else _positive_int(batch, "batch")
        if batch == 1:
            batch = 2  # torch.export specialises axes traced at size 1; the axis stays dynamic
    else:
        if n_samples is None:
            raise ParameterError("dynamic=False exports one fixed input shape: pass n_samples (and batch, default 1)")
        n_samples = _positive_int(n_samples, "n_samples")
        batch = 1 if batch is None else _positive_int(batch, "batch")
    if n_samples < n_min:
        raise ParameterError(
            f"n_samples={n_samples} is too short for this configuration: the graph needs at least {n_min} samples "
            f"(center={spec.center}, pad_mode={spec.pad_mode!r}, n_fft={spec.n_fft})"
        )
    if dynamic and n_samples == batch:
        n_samples += 1  # distinct example sizes, so the two axes are traced as independent

    twin = _matmul_twin(module)
    wrapper = _OfflineGraph(twin).eval()
    example = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, n_samples)).astype(np.float32) * 0.1)
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {"y": {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("n_samples", min=n_min)}}
    path = os.fspath(path)
    out_name = "mel" if isinstance(module, MelSpectrogram) else "spectrogram"
    _export(
        wrapper,
        (example,),
        path,
        input_names=["y"],
        output_names=[out_name],
        dynamic_shapes=dynamic_shapes,
        opset=opset,
        dim_names=[("batch", None, "n_frames")],
    )
    if verify:
        # Against the module's own tensor path (librosa's head/tail padding included).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = twin.mel_tf(example) if isinstance(twin, MelSpectrogram) else twin.power_tf(example).transpose(-1, -2)
        _verify(path, {"y": example}, [want])
    return path


# --------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class StreamingStepLayout:
    """How the exported streaming step lines up with the offline frames.

    The step keeps ``state_size`` samples ``K``; each call takes ``chunk_size``
    samples ``C`` (a multiple of the hop) and returns ``C // hop_length``
    frames: those of ``concat(state, chunk)`` on the hop grid starting at its
    first sample. ``K`` is the one length in ``[n_fft - hop, n_fft)`` with
    ``K = pad (mod hop)``, so that a state holding the left padding puts the
    frames on librosa's grid.

    Treat the state as the last ``K`` samples of the padded signal
    ``z = left padding + y + right padding`` before the first chunk: its last
    ``pad`` samples are the left padding and the ``K - pad`` before them are
    arbitrary (zeros). Then frame ``i`` of the concatenated step outputs is
    offline frame ``i - warmup_frames``: the first ``warmup_frames = (K - pad) // hop``
    outputs are warm-up frames to drop.

    Examples
    --------
    >>> import supermel
    >>> from supermel.onnx import streaming_step_layout
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> layout = streaming_step_layout(mel, chunk_size=200)
    >>> layout.state_size, layout.pad, layout.warmup_frames
    (600, 400, 1)
    """

    n_fft: int
    hop_length: int
    pad: int
    pad_mode: str
    center: bool
    n_bins: int
    chunk_size: int
    state_size: int
    warmup_frames: int

    @property
    def frames_per_step(self) -> int:
        return self.chunk_size // self.hop_length

    @property
    def head_samples(self) -> int:
        """Input samples :func:`initial_state` needs to build the left padding (0: none)."""
        return _core.left_context(self.pad, self.pad_mode)

    def num_frames(self, n_samples: int) -> int:
        """Offline frames of ``n_samples`` samples (librosa's count)."""
        return _core.num_frames(n_samples, n_fft=self.n_fft, hop_length=self.hop_length, pad=self.pad)

    def steps_for(self, n_samples: int) -> int:
        """Calls needed to get every offline frame of ``n_samples`` samples (audio, then right padding, then zeros)."""
        need = max((self.warmup_frames + self.num_frames(n_samples)) * self.hop_length, n_samples + self.pad)
        return -(-need // self.chunk_size)


def streaming_step_layout(stream_or_module: Any, *, chunk_size: int) -> StreamingStepLayout:
    """The :class:`StreamingStepLayout` of the step :func:`export_streaming_step_onnx` writes.

    Parameters
    ----------
    stream_or_module : StreamingMelSpectrogram or MelSpectrogram
        What the step computes.
    chunk_size : int > 0
        Samples per call, a multiple of ``hop_length``.

    Returns
    -------
    StreamingStepLayout

    Raises
    ------
    supermel.ParameterError
        A chunk size that is not a positive multiple of the hop.

    Examples
    --------
    >>> import supermel
    >>> from supermel.onnx import streaming_step_layout
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> streaming_step_layout(mel, chunk_size=400).chunk_size
    400
    """
    module = _unwrap(stream_or_module, what="streaming_step_layout (a stream or module)")
    spec = _spec(module)
    _check_padding(spec)
    chunk_size = _positive_int(chunk_size, "chunk_size")
    hop, n_fft, pad = spec.hop_length, spec.n_fft, spec.pad
    if chunk_size % hop:
        raise ParameterError(f"chunk_size={chunk_size} must be a multiple of hop_length={hop} (the step emits chunk_size // hop frames)")
    k = (pad - n_fft) % hop + n_fft - hop  # as StreamingMelSpectrogram's steady state at sample 0
    if k <= 0:
        raise ParameterError(
            f"hop_length={hop} >= n_fft={n_fft} without padding leaves the step no state; export the offline graph "
            "(export_onnx) and run it on each chunk instead"
        )
    if k < pad:
        raise ParameterError(f"padding of {pad} samples is longer than the step's state ({k} samples); this layout is not supported")
    n_bins = module.n_mels if isinstance(module, MelSpectrogram) else spec.n_freqs
    return StreamingStepLayout(
        n_fft=n_fft,
        hop_length=hop,
        pad=pad,
        pad_mode=spec.pad_mode,
        center=spec.center,
        n_bins=n_bins,
        chunk_size=chunk_size,
        state_size=k,
        warmup_frames=(k - pad) // hop,
    )


def export_streaming_step_onnx(
    stream_or_module: Any,
    path: PathLike,
    *,
    chunk_size: Optional[int] = None,
    num_streams: Optional[int] = None,
    dynamic_streams: bool = False,
    opset: Optional[int] = None,
    verify: bool = True,
) -> str:
    """Export the steady-state streaming step with its state as an explicit input and output.

    The graph is :func:`supermel.streaming.static_step` (offset 0) on the
    module's real-valued matmul route::

        inputs:  state (S, K) float32, chunk (S, chunk_size) float32
        outputs: new_state (S, K),     frames (S, n_mels, chunk_size // hop_length)

        seg = concat(state, chunk);  new_state = seg[:, chunk_size:]
        frames = mel(frames of seg on the hop grid starting at seg[:, 0])

    A runtime streams by feeding ``new_state`` back as ``state``. ``K`` and the
    alignment are given by :func:`streaming_step_layout` (``K`` is the
    steady-state buffer of :class:`~supermel.StreamingMelSpectrogram` at sample 0).

    Getting exactly the offline frames (``librosa.feature.melspectrogram`` of the
    whole signal ``y``), per stream:

    1. **Start**: ``state = initial_state(module, num_streams=S, head=y[:, :h])``
       with ``h = layout.head_samples``: zeros, the last ``pad`` of them replaced
       by librosa's left padding. ``constant`` padding and ``center=False`` need
       no samples (``h = 0``): the state is all zeros and the first chunk can go
       in at once. ``reflect`` needs the first ``pad + 1`` samples, ``symmetric``
       ``pad``, ``edge``/``linear_ramp`` the first sample, before the first call.
       (Starting reflect/symmetric/edge/linear_ramp from zeros instead makes
       exactly the frames ``t < ceil(pad / hop)`` differ, those that read the
       left padding; all later frames are exact.)
    2. **Run**: push the audio in chunks of ``chunk_size``; concatenate the
       ``frames`` outputs along time and drop the first ``layout.warmup_frames``
       (``(K - pad) // hop``: 1 for the reference 800/200 and the librosa
       default 2048/512 centred configurations, 3 for those with
       ``center=False``). Output frame ``i`` is then offline frame ``i``, emitted
       as soon as the chunk completing its window arrives.
    3. **End**: after the last sample, continue the stream with
       ``right_padding(module, y[:, -h2:])`` (``pad`` samples; zeros for
       constant padding and none for ``center=False``; ``h2 = pad + 1`` is
       enough) and then zeros, filling the last chunk and adding chunks until
       ``layout.warmup_frames + layout.num_frames(n)`` frames were emitted
       (``layout.steps_for(n)`` calls in all); keep the first
       ``layout.num_frames(n)`` frames after the warm-up. Frames beyond that
       read the zeros and are not offline frames.

    :func:`run_streaming_onnx` does exactly this for a whole signal.

    Parameters
    ----------
    stream_or_module : StreamingMelSpectrogram, MelSpectrogram or Spectrogram
        A stream contributes its module (and ``chunk_size``/``num_streams`` when
        those are not given).
    path : str or path-like
    chunk_size : int
        Samples per call, a positive multiple of ``hop_length``.
    num_streams : int
        ``S``, the number of streams computed together (default 1, or the
        stream's).
    dynamic_streams : bool
        Make the stream axis dynamic (``num_streams`` then only shapes the
        example used for tracing).
    opset, verify
        As :func:`export_onnx` (``verify`` runs one step with onnxruntime
        against torch's :func:`~supermel.streaming.static_step`).

    Returns
    -------
    str: the path written.

    Raises
    ------
    ParameterError
        As :func:`export_onnx`; also a ``chunk_size`` that is not a multiple of
        the hop, and configurations with no state (``center=False`` and
        ``hop_length >= n_fft``).

    Examples
    --------
    >>> import os, tempfile, numpy as np, supermel
    >>> from supermel.onnx import run_streaming_onnx
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> path = supermel.export_streaming_step_onnx(mel, os.path.join(tempfile.mkdtemp(), "step.onnx"), chunk_size=400)
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> frames = run_streaming_onnx(path, mel, y, chunk_size=400)
    >>> frames.shape, bool(np.abs(frames - mel(y)).max() <= 1e-5 * mel(y).max())
    ((80, 41), True)
    """
    _require("onnx", "onnxscript", *(("onnxruntime",) if verify else ()))
    module = _unwrap(stream_or_module, what="export_streaming_step_onnx (a stream or module)")
    stream = stream_or_module if isinstance(stream_or_module, StreamingMelSpectrogram) else None
    if chunk_size is None:
        chunk_size = None if stream is None else stream.chunk_size
        if chunk_size is None:
            raise ParameterError("pass chunk_size (a multiple of hop_length): the step has a fixed chunk size")
    if num_streams is None:
        num_streams = (stream.num_streams if stream is not None else None) or 1
    num_streams = _positive_int(num_streams, "num_streams")
    if not isinstance(dynamic_streams, bool):
        raise ParameterError(f"dynamic_streams={dynamic_streams!r} must be True or False")
    layout = streaming_step_layout(module, chunk_size=chunk_size)
    n_example = max(num_streams, 2) if dynamic_streams else num_streams
    rng = np.random.default_rng(0)
    state = torch.from_numpy(rng.standard_normal((n_example, layout.state_size)).astype(np.float32) * 0.1)
    chunk = torch.from_numpy(rng.standard_normal((n_example, layout.chunk_size)).astype(np.float32) * 0.1)
    if dynamic_streams and n_example in (layout.state_size, layout.chunk_size):
        raise ParameterError(f"num_streams={num_streams} equals a fixed axis length; pick another example size")
    wrapper = _StepGraph(_matmul_twin(module)).eval()
    dynamic_shapes = None
    if dynamic_streams:
        streams = torch.export.Dim("streams", min=1)
        dynamic_shapes = {"state": {0: streams}, "chunk": {0: streams}}
    path = os.fspath(path)
    _export(
        wrapper,
        (state, chunk),
        path,
        input_names=["state", "chunk"],
        output_names=["new_state", "frames"],
        dynamic_shapes=dynamic_shapes,
        opset=opset,
        dim_names=[("streams", None), ("streams", None, None)],
    )
    if verify:
        with torch.no_grad():
            want = wrapper(state, chunk)
        _verify(path, {"state": state, "chunk": chunk}, list(want))
    return path


def _as_rows(x: Any, name: str) -> Tuple[np.ndarray, bool]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ParameterError(f"{name} has dtype {x.dtype}; audio must be floating point")
    if x.ndim not in (1, 2):
        raise ParameterError(f"{name} has shape {x.shape}; pass (n,) or (num_streams, n)")
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32), x.ndim == 1


def initial_state(stream_or_module: Any, *, num_streams: int = 1, head: Any = None) -> np.ndarray:
    """The first ``state`` for the exported step: ``(num_streams, K)`` float32.

    Zeros, with the last ``pad`` samples set to librosa's left padding of the
    stream. Constant padding and ``center=False`` need no ``head``; the other
    modes build the padding from ``head``, the first samples of each stream
    (``(n,)`` or ``(num_streams, n)`` with ``n >= layout.head_samples``: ``pad + 1``
    for reflect, ``pad`` for symmetric, 1 for edge and linear_ramp). ``K`` does
    not depend on the chunk size.

    Parameters
    ----------
    stream_or_module : StreamingMelSpectrogram or MelSpectrogram
    num_streams : int > 0, default 1
    head : array [shape=(n,) or (num_streams, n)] or None
        The first samples of each stream (reflect, symmetric, edge, linear_ramp padding).

    Returns
    -------
    np.ndarray [shape=(num_streams, K)], float32

    Raises
    ------
    supermel.ParameterError
        A padding mode that needs ``head`` without it, or too short a ``head``.

    Examples
    --------
    >>> import supermel
    >>> from supermel.onnx import initial_state
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> initial_state(mel, num_streams=2).shape
    (2, 600)
    """
    module = _unwrap(stream_or_module, what="initial_state (a stream or module)")
    spec = _spec(module)
    layout = streaming_step_layout(module, chunk_size=spec.hop_length)
    num_streams = _positive_int(num_streams, "num_streams")
    state = np.zeros((num_streams, layout.state_size), dtype=np.float32)
    need = layout.head_samples
    if need == 0:
        return state
    if head is None:
        raise ParameterError(
            f"pad_mode={spec.pad_mode!r} builds the left padding from the first {need} samples: pass head=y[..., :{need}] "
            f"(with a zero state instead, frames 0..{-(-spec.pad // spec.hop_length) - 1} differ from the offline ones)"
        )
    rows, _ = _as_rows(head, "head")
    if rows.shape[-1] < need:
        raise ParameterError(f"head has {rows.shape[-1]} samples; pad_mode={spec.pad_mode!r} needs the first {need}")
    if rows.shape[0] != num_streams:
        raise ParameterError(f"head has {rows.shape[0]} streams, num_streams={num_streams}")
    left = _core.pad_left(torch.from_numpy(rows[:, :need].astype(np.float64)), spec.pad, spec.pad_mode)
    state[:, layout.state_size - spec.pad :] = left.numpy()
    return state


def right_padding(stream_or_module: Any, tail: Any) -> np.ndarray:
    """librosa's right padding of a stream, from its last samples: ``(num_streams, pad)`` float32.

    ``tail`` is ``(n,)`` or ``(num_streams, n)``, the stream's last ``n`` samples
    (``n >= pad + 1`` is always enough; constant padding reads none of them and
    gives zeros; ``center=False`` gives an empty array). Push these samples
    after the audio (see :func:`export_streaming_step_onnx`, step 3).

    Parameters
    ----------
    stream_or_module : StreamingMelSpectrogram or MelSpectrogram
    tail : array [shape=(n,) or (num_streams, n)]
        The stream's last samples.

    Returns
    -------
    np.ndarray [shape=(num_streams, pad)], float32

    Examples
    --------
    >>> import numpy as np, supermel
    >>> from supermel.onnx import right_padding
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80, pad_mode="reflect")
    >>> right_padding(mel, np.arange(401, dtype=np.float32)).shape
    (1, 400)
    """
    module = _unwrap(stream_or_module, what="right_padding (a stream or module)")
    spec = _spec(module)
    _check_padding(spec)
    rows, _ = _as_rows(tail, "tail")
    if spec.pad == 0 or spec.pad_mode == "constant":
        return np.zeros((rows.shape[0], spec.pad), dtype=np.float32)
    need = _core.left_context(spec.pad, spec.pad_mode)
    if rows.shape[-1] < need:
        raise ParameterError(f"tail has {rows.shape[-1]} samples; pad_mode={spec.pad_mode!r} needs the last {need}")
    right = _core.pad_right(torch.from_numpy(rows[:, -need:].astype(np.float64)), spec.pad, spec.pad_mode)
    return right.numpy().astype(np.float32)


def run_streaming_onnx(
    model: Any,
    stream_or_module: Any,
    y: Any,
    *,
    chunk_size: int,
    providers: Optional[Sequence[Any]] = None,
) -> np.ndarray:
    """Stream ``y`` through an exported step and return the offline frames.

    ``model`` is the path written by :func:`export_streaming_step_onnx` (opened
    with ``providers``, see :func:`session_providers`: TF32 off for the CUDA
    provider) or an ``onnxruntime.InferenceSession`` of it (used as it is:
    create it with :func:`inference_session`, or pass ``{"use_tf32": 0}`` to
    the CUDA provider yourself); ``y`` is ``(n,)`` or
    ``(num_streams, n)``. Follows the recipe of :func:`export_streaming_step_onnx`
    (initial state, fixed chunks, right padding and zeros, warm-up frames
    dropped) and returns ``(n_mels, T)`` or ``(num_streams, n_mels, T)`` float32,
    ``T = layout.num_frames(n)``: ``librosa.feature.melspectrogram(y=y, ...)``.

    Parameters
    ----------
    model : str, path-like or onnxruntime.InferenceSession
    stream_or_module : StreamingMelSpectrogram or MelSpectrogram
        The configuration the step was exported from.
    y : array [shape=(n,) or (num_streams, n)]
    chunk_size : int
        The chunk size the step was exported with.
    providers : sequence or None
        onnxruntime providers when ``model`` is a path.

    Returns
    -------
    np.ndarray [shape=(n_mels, T) or (num_streams, n_mels, T)], float32

    Examples
    --------
    >>> import os, tempfile, numpy as np, supermel
    >>> from supermel.onnx import run_streaming_onnx
    >>> mel = supermel.MelSpectrogram(sr=16000, n_fft=800, hop_length=200, n_mels=80)
    >>> path = supermel.export_streaming_step_onnx(mel, os.path.join(tempfile.mkdtemp(), "step.onnx"), chunk_size=400)
    >>> y = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    >>> frames = run_streaming_onnx(path, mel, y, chunk_size=400)
    >>> bool(np.abs(frames - mel(y)).max() <= 1e-5 * mel(y).max())
    True
    """
    module = _unwrap(stream_or_module, what="run_streaming_onnx (a stream or module)")
    layout = streaming_step_layout(module, chunk_size=chunk_size)
    rows, single = _as_rows(y, "y")
    n_streams, n = rows.shape
    if layout.pad == 0 and n < layout.n_fft:
        raise ParameterError(f"y has {n} samples; center=False analysis needs at least n_fft={layout.n_fft}")
    if n < layout.head_samples:
        raise ParameterError(f"y has {n} samples; pad_mode={layout.pad_mode!r} needs at least {layout.head_samples}")
    if isinstance(model, (str, os.PathLike)):
        (ort,) = _require("onnxruntime")
        sess = _session(os.fspath(model), ort, providers)
    else:
        sess = model
    state = initial_state(module, num_streams=n_streams, head=rows[:, : layout.head_samples] if layout.head_samples else None)
    right = right_padding(module, rows[:, -min(n, layout.pad + 1) :])
    steps = layout.steps_for(n)
    x = np.zeros((n_streams, steps * layout.chunk_size), dtype=np.float32)
    x[:, :n] = rows
    x[:, n : n + layout.pad] = right
    outs = []
    c = layout.chunk_size
    for i in range(steps):
        state, frames = sess.run(None, {"state": state, "chunk": x[:, i * c : (i + 1) * c]})
        outs.append(frames)
    total = layout.num_frames(n)
    out = np.concatenate(outs, axis=-1)[..., layout.warmup_frames : layout.warmup_frames + total]
    return out[0] if single else out
