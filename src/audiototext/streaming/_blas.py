"""Limit the BLAS library's own threads in a process that serves streams.

numpy's OpenBLAS starts one thread per core for its matrix products (the log-mel filter bank,
the attention arithmetic of word timings) and lets them spin between calls. In a server the
decoding lanes already keep one core each busy; the spinning threads then take CPU from them
(16 gRPC streams on 2 cores: ~0.16 of a core, and every final ~10 % more CPU; bench/NOTES.md).
The thread count is read from the environment only when numpy is first imported, so this sets
it at run time through the library's own ``*_set_num_threads`` function, as threadpoolctl
does, without depending on it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

__all__ = ["blas_threads", "limit_blas_threads"]

_SETTERS = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
)
_GETTERS = tuple(name.replace("_set_", "_get_") for name in _SETTERS)


def _loaded_openblas() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries mapped into this process (Linux; none elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    libs = []
    for path in paths:
        if not path.startswith("/"):
            continue
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def limit_blas_threads(threads: int = 1) -> int:
    """Set every loaded OpenBLAS to ``threads`` threads; returns how many libraries were set."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    done = 0
    for lib in _loaded_openblas():
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                setter(threads)
                done += 1
                break
    return done


def blas_threads() -> list[int]:
    """The thread count of every loaded OpenBLAS (for tests and reports)."""
    counts = []
    for lib in _loaded_openblas():
        for name in _GETTERS:
            getter = getattr(lib, name, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                counts.append(int(getter()))
                break
    return counts
