"""Features inside a Ray Data pipeline: a callable class for ``Dataset.map_batches``.

>>> import ray
>>> from supermel.integrations.ray import Featurizer
>>> ds = ray.data.from_items([{"path": "a.flac"}, {"path": "b.wav"}])  # doctest: +SKIP
>>> ds = ds.map_batches(
...     Featurizer,
...     fn_constructor_kwargs={"preset": "whisper-80"},   # or core keywords: {"n_mels": 80, "sr": 16000}
...     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=8),
...     batch_size=32, num_cpus=1,                        # num_gpus=1 puts each actor on a GPU
... )  # doctest: +SKIP
>>> ds.take(1)[0]["mel"].shape  # doctest: +SKIP
(80, 1234)

Each row holds a path (column ``path``), or decoded audio with its sampling rate (Ray's
``read_audio`` columns ``amplitude`` and ``sample_rate``; or ``audio``/``array`` and
``sampling_rate``), or a ``{"bytes", "path"}``/``{"array", "sampling_rate"}`` dict. Audio is
averaged to mono and resampled to the front end's rate (soxr HQ, as ``librosa.load``). The
features are added as a column (``mel``), one array per row: ``(n_mels, frames)`` for the core
mel spectrogram, as the front end returns it for a preset.

For whole corpora of files, ``supermel batch --engine ray`` plans, writes atomically, resumes
and reports failures (``supermel batch --help``); this class is for pipelines you build yourself.

Install with ``pip install "supermel[ray]"``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._errors import ParameterError
from ._features import FeatureFn, decode

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised only without Ray
    raise ImportError("supermel.integrations.ray needs Ray: pip install 'supermel[ray]'") from exc

__all__ = ["Featurizer"]

#: Columns looked for, in this order, when ``column`` / ``rate_column`` are not given.
AUDIO_COLUMNS = ("path", "amplitude", "audio", "array", "bytes")
RATE_COLUMNS = ("sample_rate", "sampling_rate", "sr")


def _gpu_device() -> str:
    """``"cuda"`` when Ray gave this worker a GPU (and torch sees one), else ``"cpu"``."""
    try:
        gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    except Exception:  # outside a Ray worker
        gpus = []
    if gpus:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


class Featurizer:
    """A callable class for ``ray.data.Dataset.map_batches``: adds a feature column.

    Parameters
    ----------
    preset : str, optional
        A front end (``supermel.frontends()``), e.g. ``"whisper-80"``, ``"kaldi-fbank"``; it
        fixes its sampling rate. Without one, the core mel spectrogram with ``**core``.
    column : str, optional
        The input column: paths (strings), audio arrays, or audio dicts. Default: the first of
        ``path``, ``amplitude``, ``audio``, ``array``, ``bytes`` in the batch.
    rate_column : str, optional
        The sampling rates of array inputs. Default: the first of ``sample_rate``,
        ``sampling_rate``, ``sr`` in the batch (or ``input_sr``).
    input_sr : int, optional
        The sampling rate of array inputs when no column gives it.
    output_column : str
        The new column (default ``"mel"``).
    sr : int, optional
        Without a preset: resample to ``sr`` first (default: each input's own rate).
    device : str, optional
        ``"cpu"``, ``"cuda"``. Default: ``"cuda"`` when Ray assigned this actor a GPU
        (``num_gpus=1`` in ``map_batches``), else ``"cpu"``.
    num_threads : int or None
        torch threads per actor (default 1: one actor per CPU is faster than threads); ``None``
        leaves torch's setting.
    mono : bool
        Average channels (default ``True``, as ``librosa.load``).
    time_major : bool
        Store 2-D features as ``(frames, bins)`` (default ``False``: as computed).
    errors : {"raise", "keep"}
        ``"raise"`` (default): a row that cannot be decoded raises a
        :class:`~supermel.ParameterError` naming it, which fails the dataset. ``"keep"``: its
        features are ``None`` and column ``error`` holds the message (``""`` for good rows).
    overrides : dict, optional
        With a preset: configuration fields to change.
    **core
        Without a preset: ``supermel.melspectrogram`` keywords (``n_fft``, ``hop_length``,
        ``n_mels``, ...; librosa's defaults otherwise).

    Examples
    --------
    Called on one batch directly, as ``map_batches`` calls it in each actor:

    >>> import numpy as np
    >>> from supermel.integrations.ray import Featurizer
    >>> f = Featurizer(preset="whisper-80")
    >>> out = f({"audio": [np.zeros(16000, np.float32)], "sampling_rate": [16000]})
    >>> out["mel"][0].shape
    (80, 100)
    """

    def __init__(
        self,
        preset: Optional[str] = None,
        *,
        column: Optional[str] = None,
        rate_column: Optional[str] = None,
        input_sr: Optional[int] = None,
        output_column: str = "mel",
        sr: Optional[int] = None,
        device: Optional[str] = None,
        num_threads: Optional[int] = 1,
        mono: bool = True,
        time_major: bool = False,
        errors: str = "raise",
        overrides: Optional[Dict[str, Any]] = None,
        **core: Any,
    ) -> None:
        if errors not in ("raise", "keep"):
            raise ParameterError(f"errors={errors!r}: use 'raise' or 'keep'")
        if num_threads is not None:
            import torch

            os.environ["OMP_NUM_THREADS"] = str(num_threads)
            torch.set_num_threads(int(num_threads))
        self.device = device or _gpu_device()
        self.fn = FeatureFn(preset, sr=sr, device=self.device, overrides=overrides, **core)
        self.column, self.rate_column, self.input_sr = column, rate_column, input_sr
        self.output_column, self.mono, self.time_major, self.errors = output_column, mono, time_major, errors

    def _columns(self, batch: Dict[str, Any]) -> Tuple[str, Optional[str]]:
        column = self.column or next((c for c in AUDIO_COLUMNS if c in batch), None)
        if column is None or column not in batch:
            raise ParameterError(f"no audio column {self.column or AUDIO_COLUMNS} in the batch (columns: {sorted(batch)}); pass column=...")
        rate = self.rate_column or next((c for c in RATE_COLUMNS if c in batch), None)
        if self.rate_column is not None and rate not in batch:
            raise ParameterError(f"rate column {self.rate_column!r} is not in the batch (columns: {sorted(batch)})")
        return column, rate

    def __call__(self, batch: Any) -> Any:
        """Add ``output_column`` to a batch (a dict of numpy arrays, or a pandas DataFrame)."""
        is_frame = hasattr(batch, "to_dict") and hasattr(batch, "columns")
        data: Dict[str, Any] = {c: batch[c].to_numpy() for c in batch.columns} if is_frame else dict(batch)
        column, rate = self._columns(data)
        values = data[column]
        n = len(values)
        rates = data[rate] if rate is not None else None
        feats: List[Any] = []
        errors: List[str] = []
        for k in range(n):
            value = values[k]
            if isinstance(value, bytes):
                value = {"bytes": value}
            elif isinstance(value, np.str_):
                value = str(value)
            value_sr = int(rates[k]) if rates is not None else self.input_sr
            try:
                y, file_sr = decode(value, value_sr, mono=self.mono)
                out = self.fn(y, file_sr)
                feats.append(self.fn.time_major(out) if self.time_major else out)
                errors.append("")
            except ParameterError as exc:
                if self.errors == "raise":
                    raise ParameterError(f"row {k} of column {column!r}: {exc}") from None
                feats.append(None)
                errors.append(str(exc))
        data[self.output_column] = _column(feats)
        if self.errors == "keep":
            data["error"] = np.asarray(errors, dtype=object)
        if is_frame:
            import pandas as pd

            return pd.DataFrame({k: list(v) for k, v in data.items()})
        return data


def _column(feats: List[Any]) -> np.ndarray:
    """One array when every row has the same shape, else an object array of arrays."""
    shapes = {None if f is None else f.shape for f in feats}
    if len(shapes) == 1 and None not in shapes and feats:
        return np.stack(feats)
    out = np.empty(len(feats), dtype=object)
    for k, f in enumerate(feats):
        out[k] = f
    return out
