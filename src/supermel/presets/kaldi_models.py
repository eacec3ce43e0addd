"""Models whose features are Kaldi fbank plus their own steps: AST, SeamlessM4T / w2v-BERT 2.0, FunASR.

Each is a :class:`~supermel.presets.kaldi.KaldiFbank` configuration plus the
model's normalisation, fixed length, frame stacking (LFR) or CMVN, written after
the model's own code (``transformers``' feature extractors, FunASR's
``WavFrontend``). None is frame-local: the streams return the log filterbank
frames and ``finalize`` applies the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .._errors import ParameterError
from .base import FrontendConfig, _Checker, register, register_module
from .kaldi import KaldiFbank, KaldiFbankConfig

__all__ = ["AstConfig", "SeamlessM4TConfig", "FunAsrConfig", "Ast", "SeamlessM4T", "FunAsr", "load_funasr_cmvn"]


@dataclass(frozen=True)
class AstConfig(KaldiFbankConfig):
    """Audio Spectrogram Transformer input (Hugging Face ``ASTFeatureExtractor``).

    torchaudio's Kaldi fbank with ``window_type="hanning"`` and 128 bins on
    ``[-1, 1]`` audio (not int16-scaled), zero-padded or cut to ``max_length``
    frames (``0``: keep every frame), then ``(x - mean) / (2 std)`` when
    ``do_normalize`` (the padding frames too, as in Hugging Face). Output
    ``(..., max_length, num_mel_bins)``. Not frame-local (the fixed length).

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("ast").config
    >>> cfg.num_mel_bins, cfg.max_length
    (128, 1024)
    """

    name: str = "ast"
    window_type: str = "hanning"
    num_mel_bins: int = 128
    max_length: int = 1024
    mean: float = -4.2677393
    std: float = 4.5689974
    do_normalize: bool = True

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("max_length", lo=0)
        c.real("mean")
        c.real("std", lo=0.0, lo_open=True)
        c.boolean("do_normalize")


@dataclass(frozen=True)
class SeamlessM4TConfig(KaldiFbankConfig):
    """SeamlessM4T / w2v-BERT 2.0 input (Hugging Face ``SeamlessM4TFeatureExtractor``).

    Kaldi fbank on int16-scaled audio (povey, 80 bins, 20 Hz-Nyquist), then per
    mel bin over the utterance ``(x - mean) / sqrt(var_ddof1 + 1e-7)`` when
    ``do_normalize_per_mel_bins``, zero frames appended up to a multiple of
    ``stride``, and every ``stride`` frames stacked into one row. Output
    ``(..., ceil(T / stride), stride * num_mel_bins)``. Not frame-local.

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("seamless-m4t").config
    >>> cfg.num_mel_bins, cfg.stride
    (80, 2)
    """

    name: str = "seamless-m4t"
    int16_scale: bool = True
    stride: int = 2
    do_normalize_per_mel_bins: bool = True

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("stride", lo=1)
        c.boolean("do_normalize_per_mel_bins")


@dataclass(frozen=True)
class FunAsrConfig(KaldiFbankConfig):
    """FunASR ``WavFrontend`` (Paraformer, SenseVoice, Fun-ASR: ``funasr/frontends/wav_frontend.py``).

    Kaldi fbank (torchaudio's, ``energy_floor=0``) of the int16-scaled audio with
    a Hamming window and 80 bins; then low frame rate stacking LFR(``lfr_m``,
    ``lfr_n``): ``(lfr_m - 1) // 2`` copies of the first frame in front, output
    frame ``i`` the concatenation of frames ``[i lfr_n, i lfr_n + lfr_m)``, past
    the end copies of the last frame, ``ceil(T / lfr_n)`` frames; then, with
    ``cmvn_file`` (the model's ``am.mvn``), ``(x + shift) * scale`` from its
    ``<AddShift>`` and ``<Rescale>`` rows (:func:`load_funasr_cmvn`). Output
    ``(..., ceil(T / lfr_n), lfr_m * num_mel_bins)``. Dither is 0 (FunASR's class
    default is 1.0; inference configs set it from the model's ``frontend_conf``).

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("funasr").config
    >>> cfg.lfr_m, cfg.lfr_n, cfg.window_type
    (7, 6, 'hamming')
    """

    name: str = "funasr"
    window_type: str = "hamming"
    int16_scale: bool = True
    energy_floor: float = 0.0  # FunASR passes energy_floor=0.0 (used only with use_energy)
    lfr_m: int = 7
    lfr_n: int = 6
    cmvn_file: Optional[str] = None

    def _validate(self, c: _Checker) -> None:
        super()._validate(c)
        c.integer("lfr_m", lo=1)
        c.integer("lfr_n", lo=1)
        if self.cmvn_file is not None and not isinstance(self.cmvn_file, str):
            c.fail("cmvn_file", "must be the path of the model's am.mvn (a string) or None")


class Ast(KaldiFbank):
    """Audio Spectrogram Transformer features (see :class:`AstConfig`). Output ``(..., max_length, bins)``.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> supermel.frontend("ast")(np.zeros(16000, np.float32)).shape
    (1024, 128)
    """

    config_class = AstConfig
    config: AstConfig

    @property
    def frame_local(self) -> bool:
        return self.config.max_length == 0

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        x = super().post_local(mel)
        c = self.config
        return (x - c.mean) / (2.0 * c.std) if c.do_normalize else x

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        n = x.shape[-2]
        if c.max_length == 0 or n == c.max_length:
            return x
        if n > c.max_length:
            return x[..., : c.max_length, :]
        fill = (0.0 - c.mean) / (2.0 * c.std) if c.do_normalize else 0.0  # zero frames, normalised like the rest
        return torch.nn.functional.pad(x, (0, 0, 0, c.max_length - n), value=fill)


class SeamlessM4T(KaldiFbank):
    """SeamlessM4T / w2v-BERT 2.0 features (see :class:`SeamlessM4TConfig`). Output ``(..., ceil(T / stride), stride * bins)``.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> supermel.frontend("seamless-m4t")(y).shape
    (49, 160)
    """

    config_class = SeamlessM4TConfig
    config: SeamlessM4TConfig

    @property
    def frame_local(self) -> bool:
        return False

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        n = x.shape[-2]
        if c.do_normalize_per_mel_bins:
            if n < 2:
                raise ParameterError(
                    f"{c.name}: per-bin normalisation needs at least 2 frames (a variance with ddof=1); got {n}. "
                    f"Pass at least {c.sizes[0] + c.sizes[1]} samples or do_normalize_per_mel_bins=False"
                )
            var, mean = torch.var_mean(x, dim=-2, keepdim=True, correction=1)
            x = (x - mean) / torch.sqrt(var + 1e-7)
        rem = n % c.stride
        if rem:
            x = torch.nn.functional.pad(x, (0, 0, 0, c.stride - rem))
        return x.reshape(x.shape[:-2] + (x.shape[-2] // c.stride, c.stride * x.shape[-1]))


def load_funasr_cmvn(path: str) -> np.ndarray:
    """The ``(2, D)`` float32 ``[shift, scale]`` rows of a FunASR ``am.mvn`` file.

    Reads the values after ``<AddShift>`` and ``<Rescale>`` (each on the
    following ``<LearnRateCoef> 0 [ ... ]`` line), as FunASR's ``load_cmvn``.

    Parameters
    ----------
    path : str
        The ``am.mvn`` file of a FunASR model.

    Returns
    -------
    np.ndarray [shape=(2, D)], float32

    Raises
    ------
    supermel.ParameterError
        A file without the two rows.

    Examples
    --------
    >>> import os, tempfile
    >>> from supermel.presets import load_funasr_cmvn
    >>> path = os.path.join(tempfile.mkdtemp(), "am.mvn")
    >>> with open(path, "w") as f:
    ...     print("<AddShift> 2 2", "<LearnRateCoef> 0 [ -1.0 -2.0 ]", "<Rescale> 2 2",
    ...           "<LearnRateCoef> 0 [ 0.5 0.25 ]", sep=os.linesep, file=f)
    >>> load_funasr_cmvn(path)
    array([[-1.  , -2.  ],
           [ 0.5 ,  0.25]], dtype=float32)
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ParameterError(f"cmvn_file={path!r} cannot be read ({exc.strerror}); pass the model's am.mvn") from None
    rows: Dict[str, List[float]] = {}
    for i, line in enumerate(lines[:-1]):
        head = line.split()[:1]
        nxt = lines[i + 1].split()
        if head and head[0] in ("<AddShift>", "<Rescale>") and nxt[:1] == ["<LearnRateCoef>"]:
            try:
                rows[head[0]] = [float(v) for v in nxt[3:-1]]
            except ValueError:
                raise ParameterError(f"cmvn_file={path!r}: the {head[0]} row has a value that is not a number") from None
    if set(rows) != {"<AddShift>", "<Rescale>"} or len(rows["<AddShift>"]) != len(rows["<Rescale>"]):
        raise ParameterError(
            f"cmvn_file={path!r} is not a FunASR am.mvn: it needs an <AddShift> and a <Rescale> row of equal length, "
            f"each on a '<LearnRateCoef> 0 [ ... ]' line"
        )
    return np.array([rows["<AddShift>"], rows["<Rescale>"]], dtype=np.float32)


class FunAsr(KaldiFbank):
    """FunASR's features: Kaldi fbank, LFR stacking and the model's CMVN (see :class:`FunAsrConfig`).

    Output ``(..., ceil(T / lfr_n), lfr_m * num_mel_bins)``. Not frame-local
    (LFR stacks neighbouring frames and repeats the first and last): the
    streaming form returns the fbank frames and ``finalize`` stacks them.

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> supermel.frontend("funasr")(y).shape                 # no cmvn_file: LFR stacking only
    (17, 560)
    """

    config_class = FunAsrConfig
    config: FunAsrConfig
    cmvn: Optional[torch.Tensor]

    def __init__(self, config: Optional[FrontendConfig] = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        c = self.config
        dim = c.lfr_m * c.num_mel_bins
        cmvn = None
        if c.cmvn_file is not None:
            rows = load_funasr_cmvn(c.cmvn_file)
            if rows.shape[1] < dim:
                raise ParameterError(
                    f"cmvn_file={c.cmvn_file!r} has {rows.shape[1]} values per row; the features have "
                    f"lfr_m * num_mel_bins = {dim} (use the am.mvn of this model's configuration)"
                )
            # FunASR adds and multiplies in float32 (its cmvn tensor is float32)
            cmvn = torch.as_tensor(rows[:, :dim], device=self.core.spectrogram.window.device).to(self.dtype)
        self.register_buffer("cmvn", cmvn)

    @property
    def frame_local(self) -> bool:
        return False

    def post_global(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        m, n = c.lfr_m, c.lfr_n
        t = x.shape[-2]
        t_lfr = -(-t // n)
        # row r of [first] * ((m - 1) // 2) + frames + [last] * inf is frame clamp(r - (m - 1) // 2, 0, t - 1)
        rows = torch.arange(t_lfr, device=x.device)[:, None] * n + torch.arange(m, device=x.device) - (m - 1) // 2
        idx = rows.clamp_(0, max(t - 1, 0)).reshape(-1)
        out = x.index_select(-2, idx).reshape(x.shape[:-2] + (t_lfr, m * x.shape[-1]))
        if self.cmvn is not None:
            out = (out + self.cmvn[0]) * self.cmvn[1]
        return out


register_module(AstConfig, Ast)
register_module(SeamlessM4TConfig, SeamlessM4T)
register_module(FunAsrConfig, FunAsr)
register(AstConfig(), "Audio Spectrogram Transformer (HF ASTFeatureExtractor): Kaldi fbank, hanning, 128 bins, 1024 frames, normalised")
register(
    SeamlessM4TConfig(),
    "SeamlessM4T / w2v-BERT 2.0 (HF SeamlessM4TFeatureExtractor): Kaldi fbank x 32768, per-bin normalised, frame pairs stacked (T/2, 160)",
)
register(
    FunAsrConfig(),
    "FunASR WavFrontend (Paraformer, SenseVoice): Kaldi fbank x 32768, hamming, 80 bins, LFR 7/6 -> (T/6, 560); cmvn_file=am.mvn",
)
