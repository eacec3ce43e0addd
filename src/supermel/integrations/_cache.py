"""One front-end module per configuration and device, shared by every integration object."""

from __future__ import annotations

import functools
from typing import Any, Tuple

from ..presets import Frontend, frontend


@functools.lru_cache(maxsize=64)
def cached_frontend(name: str, device: str, overrides: Tuple[Tuple[str, Any], ...]) -> Frontend:
    """``supermel.frontend(name, device=device, **dict(overrides))``, built once.

    Kept outside the host library's objects: ``transformers`` serialises an
    extractor's ``__dict__``, which must hold only its configuration, and the
    modules are shared between extractors of one configuration.
    """
    return frontend(name, device=device, **dict(overrides))
