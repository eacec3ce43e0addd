"""The labelled mel spectrogram image of ``supermel plot`` and ``supermel compute --plot``:
time in seconds, the mel axis in Hz (as ``librosa.display.specshow(y_axis="mel")``), colour bar in dB.

matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from .._errors import ParameterError
from ._common import _atomic_open, _require_matplotlib
from ._pipeline import _to_db


def _mel_scale(config: Optional[Mapping[str, Any]], sr: Optional[float]) -> Optional[Tuple[Optional[int], float, float, bool]]:
    """``(n_mels, fmin, fmax, htk)`` of a configuration (core parameters or a preset's), or ``None`` when unknown.

    ``n_mels`` may be ``None`` (take the array's rows). Kaldi-style front ends
    (``num_mel_bins``, ``low_freq``, ``high_freq``) use the HTK mel formula,
    with ``high_freq <= 0`` counted from the Nyquist frequency; an extra
    energy column (``use_energy``) has no frequency, so it makes the scale unknown.
    """
    if not config:
        return None
    if "num_mel_bins" in config:
        rate = sr or config.get("sample_frequency")
        if not rate or config.get("use_energy"):
            return None
        high = float(config.get("high_freq") or 0.0)
        return int(config["num_mel_bins"]), float(config.get("low_freq") or 0.0), (high if high > 0 else rate / 2.0 + high), True
    if "n_mels" in config or "fmax" in config:
        fmax = config.get("fmax")
        rate = sr or config.get("sr")
        if fmax is None and not rate:
            return None
        n_mels = config.get("n_mels")
        fmax = float(fmax) if fmax is not None else float(rate) / 2.0
        return (None if n_mels is None else int(n_mels)), float(config.get("fmin") or 0.0), fmax, bool(config.get("htk"))
    return None


def _hz_ticks(n_mels: int, fmin: float, fmax: float, htk: bool) -> Tuple[List[float], List[str]]:
    """Tick positions (fractional mel bins) and Hz labels for a mel axis, as ``specshow(y_axis="mel")`` reads.

    The bands' centres are ``mel_frequencies(n_mels + 2, fmin, fmax, htk)[1:-1]``:
    equally spaced in mel, so a frequency's position is linear in its mel value.
    Ticks sit at 0 and powers of two Hz (at least ~1/10 of the axis apart);
    a narrow band gets ticks at a few bins labelled with their centre frequencies.
    """
    import numpy as np

    import supermel

    lo, hi = supermel.hz_to_mel(np.array([fmin, fmax], dtype=np.float64), htk=htk)
    step = (hi - lo) / (n_mels + 1)  # mel between neighbouring band centres
    first = lo + step  # band 0's centre
    candidates = np.array([0.0] + [2.0 ** k for k in range(4, 16)])  # 0, 16 Hz ... 32 kHz
    positions = (supermel.hz_to_mel(candidates, htk=htk) - first) / step
    min_gap = max(1.0, n_mels / 10.0)
    ticks: List[Tuple[float, float]] = []
    for pos, hz in zip(positions[::-1], candidates[::-1]):  # from the top, where the mel scale is log-like
        if -0.5 <= pos <= n_mels - 0.5 and (not ticks or ticks[-1][0] - pos >= min_gap):
            ticks.append((float(pos), float(hz)))
    if len(ticks) < 3:  # a narrow band: label a few bins with their centre frequencies
        centres = supermel.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)[1:-1]
        bins = sorted({int(round(b)) for b in np.linspace(0, n_mels - 1, min(n_mels, 5))})
        ticks = [(float(b), float(centres[b])) for b in bins][::-1]
    ticks.reverse()
    return [p for p, _ in ticks], [f"{hz:.0f}" for _, hz in ticks]


def _mel_figure(
    mel: Any,
    *,
    sr: Optional[float],
    hop_length: Optional[int],
    is_db: bool = False,
    power: float = 2.0,
    preset: Optional[str] = None,
    time_axis: int = -1,
    title: str = "",
    mel_config: Optional[Mapping[str, Any]] = None,
) -> Any:
    """A labelled mel spectrogram as a :class:`matplotlib.figure.Figure` (Agg canvas, not shown).

    Time in seconds when ``sr`` and ``hop_length`` are known, else frames. The
    mel axis is in Hz (ticks at the frequencies of the bands, see
    :func:`_hz_ticks`) when ``mel_config`` (``n_mels``/``fmin``/``fmax``/``htk``,
    or a Kaldi preset's ``num_mel_bins``/``low_freq``/``high_freq``) and the
    rate describe the array's rows; otherwise in bin numbers, and the label says
    so. A power (or magnitude, ``power=1``) spectrogram is shown in dB relative
    to its maximum; ``is_db`` data as they are; a preset's features
    (``preset``) as they are, with the preset named on the colour bar.
    """
    import numpy as np

    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(mel)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ParameterError(f"cannot plot an array of shape {data.shape}: expected (n_mels, n_frames)")
    if time_axis in (-2, 0):  # time-major features (Kaldi fbank, SpeechT5): (T, n_mels)
        data = data.T
    data = data.astype(np.float64)
    if not np.isfinite(data).all():
        raise ParameterError("cannot plot: the spectrogram has NaN or infinite values")
    if preset is not None:
        values, label = data, f"{preset} features"
    elif is_db or data.min() < 0:  # dB already (power spectra are never negative)
        values, label = data, "dB"
    else:
        values = _to_db(data, power)
        values = values - values.max()  # dB relative to the maximum, librosa's ref=np.max
        label = "dB (re max)"
    n_mels, n_frames = values.shape
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if sr and hop_length:
        dt = float(hop_length) / float(sr)
        extent = (-0.5 * dt, (n_frames - 0.5) * dt, -0.5, n_mels - 0.5)
        xlabel = "Time (s)"
    else:
        extent = (-0.5, n_frames - 0.5, -0.5, n_mels - 0.5)
        xlabel = "Frame"
    img = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest", cmap="magma", extent=extent)
    ax.set_xlabel(xlabel)
    scale = _mel_scale(mel_config, sr)
    if scale is not None and scale[0] in (None, n_mels) and scale[2] > scale[1] >= 0:
        positions, labels = _hz_ticks(n_mels, scale[1], scale[2], scale[3])
        ax.set_yticks(positions, labels)
        ax.set_ylabel("Frequency (Hz, mel scale)")
    else:  # the bands' frequencies are not known (or do not match the rows)
        ax.set_ylabel("Mel bin (frequencies unknown)")
    ax.set_title(title or "Mel spectrogram")
    cbar = fig.colorbar(img, ax=ax, format="%+.0f" if label.startswith("dB") else None)
    cbar.set_label(label)
    return fig


def _plot_png(mel: Any, path: Path, **kwargs: Any) -> bool:
    """Write :func:`_mel_figure` (same keywords) to ``path`` as PNG; ``True`` when the mel axis is in Hz."""
    fig = _mel_figure(mel, **kwargs)
    with _atomic_open(path) as fh:
        fig.savefig(fh, format="png")
    return "Hz" in fig.axes[0].get_ylabel()
