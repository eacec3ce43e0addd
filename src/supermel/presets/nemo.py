"""NVIDIA NeMo's log-mel features (``FilterbankFeatures``: FastConformer, Parakeet, Canary), offline and streaming."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import _core
from .._errors import ParameterError
from .base import Array, Frontend, MelConfig, _Checker, preemphasis, register, register_module

__all__ = ["NemoConfig", "Nemo"]


@dataclass(frozen=True)
class NemoConfig(MelConfig):
    """NVIDIA NeMo ``FilterbankFeatures`` (FastConformer, Parakeet, Canary).

    Pre-emphasis 0.97 over the whole signal, centred STFT 512/160 with a
    symmetric Hann(400) centred in 512, power, Slaney mels 0-8000 Hz,
    ``ln(M + log_guard)`` (2^-24), then per-feature normalisation over the valid
    frames (unbiased std, ``+ std_eps``) and ``pad_value`` beyond them.

    ``variant``: "2.5" (NeMo >= 2.5: zero padding, ``L // hop`` valid frames,
    samples past a batch item's length zeroed after pre-emphasis) or "2.4"
    (NeMo <= 2.4: reflect padding, ``L // hop + 1`` valid frames).
    ``pad_mode=None`` follows the variant.

    Examples
    --------
    >>> import supermel
    >>> cfg = supermel.frontend("nemo-128").config
    >>> cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels
    (512, 400, 160, 128)
    """

    name: str = "nemo-80"
    sr: float = 16000
    n_fft: int = 512
    hop_length: int = 160
    win_length: Optional[int] = 400
    periodic: bool = False
    pad_mode: Optional[str] = None  # type: ignore[assignment]
    power: float = 2.0
    n_mels: int = 80
    fmax: Optional[float] = 8000.0
    variant: str = "2.5"
    preemphasis: float = 0.97
    log_guard: float = 2.0**-24
    normalize: Optional[str] = "per_feature"
    std_eps: float = 1e-5
    pad_to: int = 0
    pad_value: float = 0.0

    @property
    def effective_pad_mode(self) -> str:
        if self.pad_mode is not None:
            return self.pad_mode
        return "constant" if self.variant == "2.5" else "reflect"

    def _validate(self, c: _Checker) -> None:
        c.choice("variant", ("2.5", "2.4"))
        super()._validate(c)
        c.real("preemphasis", lo=0.0, hi=1.0)
        c.real("log_guard", lo=0.0, lo_open=True)
        c.choice("normalize", ("per_feature", None))
        c.real("std_eps", lo=0.0)
        c.integer("pad_to", lo=0)
        c.real("pad_value")


class Nemo(Frontend):
    """NVIDIA NeMo's log-mel features (see :class:`NemoConfig`). Output ``(..., n_mels, 1 + L // 160)``.

    ``forward(y, lengths=None)``: ``lengths`` gives each batch item's number of
    valid samples (the rest is padding), as NeMo's ``input_signal_length``.
    Not frame-local with ``normalize="per_feature"``.

    {frontend_parameters}

    Examples
    --------
    >>> import numpy as np, supermel
    >>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    >>> supermel.frontend("nemo-80")(y).shape
    (80, 101)
    """

    config_class = NemoConfig
    config: NemoConfig

    @property
    def frame_local(self) -> bool:
        # NeMo >= 2.5 also sets the last frame (t >= L // hop) to pad_value.
        c = self.config
        return c.normalize is None and c.pad_to == 0 and c.variant == "2.4"

    @property
    def pre_context(self) -> int:
        return 1 if self.config.preemphasis else 0

    def pre(self, y: torch.Tensor, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        return preemphasis(y, self.config.preemphasis, prev)

    def valid_frames(self, n_samples: Union[int, torch.Tensor]) -> Union[int, torch.Tensor]:
        """Valid frames of an item with ``n_samples`` samples: ``n // hop`` (2.5) or ``n // hop + 1`` (2.4)."""
        n = n_samples // self.config.hop_length
        return n if self.config.variant == "2.5" else n + 1

    def post_local(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.log(mel + self.config.log_guard)

    def post_global(self, x: torch.Tensor, n_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-feature normalisation over the first ``n_valid`` frames of each item; ``pad_value`` after."""
        c = self.config
        n_frames = x.shape[-1]
        if n_valid is None:
            n_valid = torch.full(x.shape[:-2], n_frames, dtype=torch.long, device=x.device)
        n_valid = n_valid.clamp(max=n_frames)
        mask = torch.arange(n_frames, device=x.device) < n_valid[..., None, None]
        if c.normalize == "per_feature":
            n = n_valid[..., None, None].to(x.dtype)
            xm = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
            mean = xm.sum(dim=-1, keepdim=True) / n
            dev = torch.where(mask, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
            std = torch.sqrt(dev.square().sum(dim=-1, keepdim=True) / (n - 1))
            x = (x - mean) / (std + c.std_eps)
        x = torch.where(mask, x, torch.full((), c.pad_value, dtype=x.dtype, device=x.device))
        if c.pad_to > 0 and n_frames % c.pad_to:
            x = torch.nn.functional.pad(x, (0, c.pad_to - n_frames % c.pad_to), value=c.pad_value)
        return x

    def _lengths(self, lengths: Optional[Array], n: int, shape: Tuple[int, ...], device: torch.device) -> Optional[torch.Tensor]:
        """The per-item valid samples as a 1-D long tensor; ``None`` when not given (every item whole).

        The range check reads the values: eagerly a :class:`~supermel.ParameterError`; while
        ``torch.compile`` traces, a check inside the graph (``torch._assert_async``: a
        ``RuntimeError`` with the same message when the compiled call runs, docs/compile.md).
        """
        if lengths is None:
            return None
        ln = torch.as_tensor(np.asarray(lengths) if not isinstance(lengths, torch.Tensor) else lengths)
        if ln.is_floating_point() or ln.is_complex() or ln.dtype == torch.bool:
            raise ParameterError(f"lengths must be integer sample counts, not {ln.dtype}")
        if tuple(ln.shape) != shape:
            raise ParameterError(f"lengths has shape {tuple(ln.shape)}; it needs one entry per batch item, shape {shape}")
        ln = ln.reshape(-1).to(device=device, dtype=torch.long)
        if torch.compiler.is_compiling():
            torch._assert_async(((ln >= 0) & (ln <= n)).all(), f"lengths must lie in [0, {n}] (the padded length)")
        elif bool(((ln < 0) | (ln > n)).any()):
            raise ParameterError(f"lengths must lie in [0, {n}] (the padded length); got {ln.tolist()}")
        return ln

    def features_tf(self, y: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, n)`` audio (and ``(B,)`` valid samples per item; ``None``: all ``n``) -> ``(B, n_mels, T)``.

        Without ``lengths`` nothing depends on the audio's values but the features: the
        checks use the shape alone, so ``torch.compile(..., fullgraph=True)`` traces it whole.
        """
        c = self.config
        n = y.shape[-1]
        z = self.pre(y)
        short = f"{c.name}: per-feature normalisation needs at least 2 valid frames per item (>= {2 * c.hop_length} samples); got "
        if lengths is None:
            if c.normalize == "per_feature" and self.valid_frames(n) < 2:
                raise ParameterError(short + f"{n} samples")
            n_valid = torch.full(y.shape[:-1], self.valid_frames(n), dtype=torch.long, device=y.device)
        else:
            if c.variant == "2.5":
                z = torch.where(torch.arange(n, device=z.device) < lengths[:, None], z, torch.zeros((), dtype=z.dtype, device=z.device))
            n_valid = self.valid_frames(lengths)
            if c.normalize == "per_feature":
                if torch.compiler.is_compiling():
                    torch._assert_async((n_valid >= 2).all(), short + "fewer in some item")
                elif bool((n_valid < 2).any()):
                    raise ParameterError(short + f"{int(lengths.min())} samples")
        return self.post_global(self.post_local(self.core.mel_tf(z)), n_valid)

    def forward(self, y: Array, lengths: Optional[Array] = None) -> Array:  # type: ignore[override]
        """``(..., n)`` audio (and optional per-item valid ``lengths``) -> ``(..., n_mels, T)``."""
        t, shape, was_numpy = self._batch(y)
        ln = self._lengths(lengths, t.shape[-1], shape, t.device)
        out = self.features_tf(t, ln)
        if self.check_finite:
            _core.warn_overflow(out, t)
        return _core.from_batch(out, shape, was_numpy)

    # -- streaming: the per-feature normalisation needs the valid frames of each stream
    def finalize_frames(self, x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        n_valid = torch.as_tensor([self.valid_frames(c) for c in counts], device=x.device)
        if self.config.normalize == "per_feature" and min(self.valid_frames(c) for c in counts) < 2:
            raise ParameterError(
                f"{self.config.name}: per-feature normalisation needs at least 2 valid frames per item "
                f"(>= {2 * self.config.hop_length} samples); got {min(counts)} samples"
            )
        return self.post_global(x, n_valid)


register_module(NemoConfig, Nemo)
register(NemoConfig(), "NVIDIA NeMo FastConformer / Parakeet CTC-RNNT, 80 features, per-feature normalised (NeMo >= 2.5; variant='2.4')")
register(NemoConfig(name="nemo-128", n_mels=128), "NVIDIA NeMo with 128 features (parakeet-tdt-0.6b-v2/v3, Canary)")
