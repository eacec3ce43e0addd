"""Features for a Hugging Face ``datasets.Dataset``: :func:`add_features` adds a column.

>>> from datasets import Dataset, Audio
>>> from supermel.integrations.datasets import add_features
>>> ds = Dataset.from_dict({"audio": ["a.flac", "b.wav"]}).cast_column("audio", Audio(decode=False))  # doctest: +SKIP
>>> ds = add_features(ds, preset="whisper-80", num_proc=2)  # doctest: +SKIP
>>> np.asarray(ds[0]["mel"]).shape  # (frames, n_mels): stored time-major  # doctest: +SKIP
(3000, 80)

Audio is decoded with soundfile (and resampled with soxr HQ, as ``librosa.load``) inside a
batched ``Dataset.map``, so no torchcodec or FFmpeg is needed: ``datasets`` >= 4 decodes its
``Audio`` feature with torchcodec, which this function bypasses by reading the column as
``Audio(decode=False)`` (``{"bytes", "path"}``). Columns of paths, of ``{"array",
"sampling_rate"}`` dicts, and torchcodec-decoded values work too.

Features are stored time-major, ``(frames, n_mels)``, as ``Array2D((None, n_mels))``: Arrow's
fixed-shape arrays allow only the first dimension to vary. ``num_proc=N`` is safe: torch runs
one thread in each worker process (and in this process while they run; with several torch
threads already started, forked workers can hang).

Install with ``pip install "supermel[datasets]"``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._errors import ParameterError
from ._features import FeatureFn, decode

try:
    import datasets
except ImportError as exc:  # pragma: no cover - exercised only without datasets
    raise ImportError("supermel.integrations.datasets needs Hugging Face datasets: pip install 'supermel[datasets]'") from exc

__all__ = ["add_features"]

#: One :class:`FeatureFn` per configuration in each process (built on first use, never pickled).
_FNS: Dict[Tuple[Any, ...], FeatureFn] = {}


class _MapFn:
    """The function ``Dataset.map`` runs: plain configuration only, so ``datasets`` can hash and
    pickle it; the feature module is built once per process."""

    def __init__(self, audio_column: str, feature_column: str, config: Dict[str, Any], mono: bool, parent: int) -> None:
        self.audio_column, self.feature_column = audio_column, feature_column
        self.config, self.mono, self.parent = config, mono, parent

    def _fn(self) -> FeatureFn:
        key = tuple(sorted((k, repr(v)) for k, v in self.config.items()))
        fn = _FNS.get(key)
        if fn is None:
            if os.getpid() != self.parent:  # a worker of num_proc: one torch thread
                import torch

                torch.set_num_threads(1)
            cfg = dict(self.config)
            fn = _FNS[key] = FeatureFn(cfg.pop("preset"), sr=cfg.pop("sr"), device=cfg.pop("device"), overrides=cfg.pop("overrides"), **cfg)
        return fn

    def __call__(self, batch: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
        fn = self._fn()
        out: List[np.ndarray] = []
        for k, value in enumerate(batch[self.audio_column]):
            try:
                y, sr = decode(value, mono=self.mono)
            except ParameterError as exc:
                raise ParameterError(f"column {self.audio_column!r}, row {k} of this batch: {exc}") from None
            out.append(fn.time_major(fn(y, sr)))
        return {self.feature_column: out}


def add_features(
    dataset: "datasets.Dataset",
    audio_column: str = "audio",
    preset: Optional[str] = None,
    *,
    feature_column: str = "mel",
    sr: Optional[int] = None,
    device: str = "cpu",
    mono: bool = True,
    batch_size: int = 32,
    num_proc: Optional[int] = None,
    overrides: Optional[Dict[str, Any]] = None,
    desc: Optional[str] = None,
    **core: Any,
) -> "datasets.Dataset":
    """A copy of ``dataset`` with a feature column computed from ``audio_column``.

    Parameters
    ----------
    dataset : datasets.Dataset
    audio_column : str
        ``Audio`` (read as ``Audio(decode=False)``: no torchcodec needed), ``{"bytes", "path"}``
        or ``{"array", "sampling_rate"}`` structs, or paths.
    preset : str, optional
        A front end (``supermel.frontends()``), which fixes the sampling rate; without one, the
        core mel spectrogram with ``**core``.
    feature_column : str
        The new column (default ``"mel"``), time-major: ``(frames, n_mels)``.
    sr : int, optional
        Without a preset: resample to ``sr`` first (default: each row's own rate).
    device : str
        ``"cpu"`` (default) or ``"cuda"`` (then keep ``num_proc`` unset).
    mono : bool
        Average channels (as ``librosa.load``).
    batch_size : int
        Rows per ``map`` call.
    num_proc : int, optional
        Worker processes for ``map``; each runs torch on one thread.
    overrides : dict, optional
        With a preset: configuration fields to change.
    desc : str, optional
        The progress bar's label.
    **core
        Without a preset: ``supermel.melspectrogram`` keywords (librosa's defaults otherwise).

    Returns
    -------
    datasets.Dataset

    Raises
    ------
    ParameterError
        When the column is missing or a row cannot be decoded (the message names it).

    Examples
    --------
    >>> import numpy as np, supermel
    >>> from datasets import Audio, Dataset
    >>> from supermel.integrations.datasets import add_features
    >>> ds = Dataset.from_dict({"audio": [supermel.audio.example_path()]}).cast_column("audio", Audio(decode=False))
    >>> ds = add_features(ds, "audio", preset="whisper-80")
    >>> np.asarray(ds[0]["mel"]).shape                           # (frames, n_mels): time-major
    (1200, 80)
    """
    if audio_column not in dataset.column_names:
        raise ParameterError(f"audio_column={audio_column!r} is not a column of the dataset (columns: {dataset.column_names})")
    if feature_column in dataset.column_names:
        raise ParameterError(f"feature_column={feature_column!r} already exists: choose another name or remove that column first")
    if batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be at least 1")
    if device != "cpu" and num_proc not in (None, 1):
        raise ParameterError(f"device={device!r} with num_proc={num_proc}: worker processes would share the GPU through fork; use num_proc=None")
    feature = dataset.features.get(audio_column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))  # soundfile decodes, not torchcodec
    config: Dict[str, Any] = {"preset": preset, "sr": sr, "device": device, "overrides": overrides, **core}
    fn = FeatureFn(preset, sr=sr, device=device, overrides=overrides, **core)  # checks the parameters here, before any row
    probe = fn.time_major(fn(np.zeros(int(fn.sr or sr or 16000), dtype=np.float32), int(fn.sr or sr or 16000)))
    new_features = dataset.features.copy()
    if probe.ndim == 2:
        new_features[feature_column] = datasets.Array2D(shape=(None, int(probe.shape[1])), dtype=str(probe.dtype))
    else:
        new_features = None  # let datasets infer nested lists
    map_fn = _MapFn(audio_column, feature_column, config, mono, os.getpid())
    threads: Optional[int] = None
    if num_proc is not None and num_proc > 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        return dataset.map(map_fn, batched=True, batch_size=batch_size, num_proc=num_proc, features=new_features, desc=desc or f"supermel {preset or 'melspectrogram'}")
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
