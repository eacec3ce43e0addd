"""Thread pools of a server process: :func:`limit_threads`."""

from __future__ import annotations

from typing import Any, Dict

__all__ = ["limit_threads"]


def limit_threads() -> Dict[str, Any]:
    """Pin the compute libraries to one thread for a server process; what was set.

    torch's intra-op pool (``torch.set_num_threads(1)``) and, through threadpoolctl,
    the BLAS and OpenMP pools (numpy's OpenBLAS). Worker threads spinning next to the
    event loop cost CPU the loop needs: pinning OpenBLAS to one thread cut server CPU
    by ~35% in the measurements of docs/serving.md. ``supermel serve`` calls this at start.

    Returns
    -------
    dict
        What was set: ``{"torch": 1, "threadpoolctl": ...}``.

    Examples
    --------
    >>> from supermel.serve import limit_threads
    >>> set_ = limit_threads()   # doctest: +SKIP
    >>> import torch; torch.get_num_threads()   # doctest: +SKIP
    1
    """
    import torch

    torch.set_num_threads(1)
    done: Dict[str, Any] = {"torch": 1}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        done["threadpoolctl"] = "not installed (pip install threadpoolctl); set OPENBLAS_NUM_THREADS=1 instead"
        return done
    threadpool_limits(limits=1)  # applied now, kept (not used as a context manager)
    done["blas/openmp"] = 1
    return done
