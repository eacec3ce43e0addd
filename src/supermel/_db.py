"""The decibel conversions on tensors, shared by :mod:`supermel.functional` and :mod:`supermel.modules`.

librosa 0.11 semantics: a callable ``ref`` (``np.max``) and ``top_db`` act on the
whole array, batch included. No host synchronisation on device tensors (the
reference level of ``np.max`` stays a device scalar).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from ._errors import ParameterError

__all__ = ["RefSpec"]


RefSpec = Union[float, Callable[..., Any]]


def _ref_value(ref: RefSpec, magnitude: torch.Tensor) -> Union[float, torch.Tensor]:
    """The reference level: a number, or a callable applied to the whole magnitude."""
    if isinstance(ref, _Const):
        return ref.value
    if callable(ref):
        if ref in (np.max, np.amax, torch.max, torch.amax):
            return magnitude.amax()  # stays on the device
        if ref in (np.min, np.amin, torch.min, torch.amin):
            return magnitude.amin()
        try:
            value = ref(magnitude)
        except TypeError:  # a numpy-only callable: evaluate on the host
            value = ref(magnitude.detach().cpu().numpy())
        return torch.as_tensor(value, dtype=magnitude.dtype, device=magnitude.device).abs()
    if isinstance(ref, torch.Tensor):
        return ref.abs().to(magnitude.dtype)
    return abs(float(ref))


def _check_empty(S: torch.Tensor, ref: Any, top_db: Optional[float]) -> None:
    if S.numel() == 0 and (top_db is not None or (callable(ref) and not isinstance(ref, _Const))):
        raise ParameterError(
            f"S is empty (shape {tuple(S.shape)}): top_db and a callable ref need the array's maximum; "
            "pass at least one value, or top_db=None with a numeric ref to convert an empty array"
        )


def _power_to_db_tensor(S: torch.Tensor, *, ref: RefSpec = 1.0, amin: float = 1e-10, top_db: Optional[float] = 80.0) -> torch.Tensor:
    if not amin > 0:
        raise ParameterError(f"amin={amin} must be strictly positive")
    if top_db is not None and top_db < 0:
        raise ParameterError(f"top_db={top_db} must be non-negative (or None)")
    _check_empty(S, ref, top_db)
    magnitude = S.abs() if S.is_complex() else S
    ref_value = _ref_value(ref, magnitude)
    log_spec = 10.0 * torch.log10(torch.clamp(magnitude, min=amin))
    if isinstance(ref_value, torch.Tensor):
        log_spec = log_spec - 10.0 * torch.log10(torch.clamp(ref_value, min=amin))
    else:
        log_spec = log_spec - 10.0 * math.log10(max(amin, ref_value))
    if top_db is not None:
        log_spec = torch.maximum(log_spec, log_spec.amax() - top_db)
    return log_spec


class _Const:
    """A precomputed reference level passed on as a callable."""

    def __init__(self, value: Union[float, torch.Tensor]) -> None:
        self.value = value

    def __call__(self, _magnitude: torch.Tensor) -> Union[float, torch.Tensor]:
        return self.value
