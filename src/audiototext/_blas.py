"""numpy's OpenBLAS thread count: held at one thread while log-mel features are computed
(:func:`audiototext.audio.features.log_mel_spectrogram_of_pieces`, for files and streams), or
for a whole process (the server).

numpy's OpenBLAS splits even a small matrix product (the log-mel filter bank: 256 frames x 201
bins x 80 mels) over every core, then its workers spin between calls, taking the cores ONNX
Runtime's threads are about to use: on a busy 2-core machine a 33-s clip's log-mel cost 35-90
ms of CPU instead of 8, and with 16 streams the spinning worker took ~0.16 of a core from the
server's decoding lanes (bench/NOTES.md). Results are bit-identical (each output element is
reduced the same way). The count is read from the environment only when numpy is first
imported, so it is set at run time through the library's own functions, found in the libraries
this process has mapped (Linux; a no-op elsewhere or with another BLAS).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_threads", "limit_blas_threads", "single_threaded_blas"]

_SUFFIXES = ("", "64_")  # the 64-bit-integer builds' symbol names


@functools.cache
def _openblas_libraries() -> tuple[ctypes.CDLL, ...]:
    """The OpenBLAS libraries mapped into this process (numpy loads its own at import)."""
    if sys.platform != "linux":
        return ()
    import numpy  # noqa: F401  (maps numpy's OpenBLAS if nothing has yet)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = sorted(
                {
                    fields[5]
                    for fields in (line.rstrip("\n").split(maxsplit=5) for line in maps)
                    if len(fields) == 6 and "openblas" in fields[5].lower()
                }
            )
    except OSError:
        return ()
    libraries = []
    for path in paths:
        if path.startswith("/"):
            try:
                libraries.append(ctypes.CDLL(path))
            except OSError:
                continue
    return tuple(libraries)


def _function(library: ctypes.CDLL, kind: str) -> Any:
    """``openblas_{kind}`` (set_num_threads, get_num_threads, set_num_threads_local) of
    ``library``, under whichever of OpenBLAS's prefixes and suffixes it was built with."""
    for prefix in ("openblas_", "scipy_openblas_"):
        for suffix in _SUFFIXES:
            fn = getattr(library, f"{prefix}{kind}{suffix}", None)
            if fn is not None:
                return fn
    return None


def limit_blas_threads(threads: int = 1) -> int:
    """Set every loaded OpenBLAS to ``threads`` threads for good; how many libraries were set."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    done = 0
    for library in _openblas_libraries():
        setter = _function(library, "set_num_threads")
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter.restype = None
            setter(threads)
            done += 1
    return done


def blas_threads() -> list[int]:
    """The thread count of every loaded OpenBLAS (for tests and reports)."""
    counts = []
    for library in _openblas_libraries():
        getter = _function(library, "get_num_threads")
        if getter is not None:
            getter.restype = ctypes.c_int
            counts.append(int(getter()))
    return counts


def _local_setters() -> list[Any]:
    """``openblas_set_num_threads_local`` of each library that has it (sets the count and
    returns the previous one)."""
    setters = []
    for library in _openblas_libraries():
        fn = _function(library, "set_num_threads_local")
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            setters.append(fn)
    return setters


class _Held:
    """Who is inside :func:`single_threaded_blas`, and the counts to restore after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved: list[int] = []


# One for the process: the thread count it guards is process-wide.
_HELD = _Held()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's BLAS calls on one thread for the duration of the block.

    The count is process-wide: the first thread to enter sets it to 1 and the last to leave
    restores what it was, so overlapping blocks in several threads are safe (BLAS calls
    elsewhere in the process run on one thread meanwhile).
    """
    setters = _local_setters()
    if not setters:
        yield
        return
    with _HELD.lock:
        if _HELD.users == 0:
            _HELD.saved = [setter(1) for setter in setters]
        _HELD.users += 1
    try:
        yield
    finally:
        with _HELD.lock:
            _HELD.users -= 1
            if _HELD.users == 0:
                for setter, count in zip(setters, _HELD.saved, strict=True):
                    setter(count)
