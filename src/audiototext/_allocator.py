"""glibc's allocator, tuned for tensors that come and go every window, and heap trims.

Process-wide, like :mod:`audiototext._blas`: every ONNX Runtime session calls
:func:`tune_allocator`, and the file transcriber trims the heap after a session load, a long
block of features and, when the heap has grown, after a window. Everything is a no-op where
glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import cast

from audiototext.errors import ConfigError

__all__ = [
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "mmap_threshold_setting",
    "release_memory",
    "release_memory_if_grown",
    "tune_allocator",
]

log = logging.getLogger(__name__)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``malloc_trim`` exists only there; musl's ``mallopt``
    is a no-op stub), else ``None``."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    libc = _glibc()
    if libc is None:
        return None
    trim = libc.malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)


# glibc maps a block on its own (no hole left when freed) only above the mmap threshold,
# which it raises to every mapped block freed: left alone, every tensor ends up in the heap,
# which fragments and grows with file length. 1 MiB keeps beam search's logits (1013 KiB a
# step) in the heap; the raised trim threshold keeps freed memory for the next window's
# tensors instead of returning and re-faulting it (peaks: bench/NOTES.md, round 11).
MMAP_THRESHOLD_BYTES = 2**20
TRIM_THRESHOLD_BYTES = 64 * 2**20
_MMAP_ENV = "AUDIOTOTEXT_MMAP_THRESHOLD"
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit (mallopt refuses more)


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    libc = _glibc()
    if libc is None:
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return cast(Callable[[int, int], int], mallopt)


def _set_by_person(variable: str, tunable: str) -> bool:
    """Whether glibc was given this setting at start-up, as ``variable`` or in
    ``GLIBC_TUNABLES``: the person's own choice, left as it is."""
    return bool(os.environ.get(variable, "").strip()) or tunable in os.environ.get(
        "GLIBC_TUNABLES", ""
    )


def mmap_threshold_setting() -> int | None:
    """The mmap threshold :func:`tune_allocator` sets, in bytes, or ``None`` to leave glibc's.

    ``AUDIOTOTEXT_MMAP_THRESHOLD`` overrides :data:`MMAP_THRESHOLD_BYTES` (a byte count, or
    ``0``/``off`` for glibc's own dynamic threshold); glibc's ``MALLOC_MMAP_THRESHOLD_`` or
    ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N``, when set, wins over both.
    """
    if _set_by_person("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"):
        return None
    env = os.environ.get(_MMAP_ENV, "").strip().lower()
    if not env:
        return MMAP_THRESHOLD_BYTES
    if env in ("0", "off", "dynamic"):
        return None
    try:
        value = int(env)
    except ValueError:
        value = -1
    if not 0 < value <= _MMAP_THRESHOLD_MAX:
        raise ConfigError(
            f"{_MMAP_ENV} must be a byte count from 1 to {_MMAP_THRESHOLD_MAX} or 'off', "
            f"not {env!r}"
        )
    return value


def tune_allocator() -> int | None:
    """Fix glibc's mmap threshold (see :func:`mmap_threshold_setting`) and raise its trim
    threshold to :data:`TRIM_THRESHOLD_BYTES` (unless ``MALLOC_TRIM_THRESHOLD_`` or its
    tunable is set); return the mmap threshold, or ``None`` when left alone (not glibc, or
    switched off).

    glibc raises its dynamic threshold to every mapped block freed, so after the first window
    tensors up to 32 MB come from the heap and leave holes the next window's tensors do not
    fit: peaks grew with file length (bench/NOTES.md, round 11). Called by every
    :class:`~audiototext.inference.ort_session.Session`; process-wide and cheap, so calling it
    again is harmless.
    """
    value = mmap_threshold_setting()
    mallopt = _mallopt()
    if value is None or mallopt is None:
        return None
    if not mallopt(_M_MMAP_THRESHOLD, value):
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", value)
        return None
    if not _set_by_person("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"):
        mallopt(_M_TRIM_THRESHOLD, max(TRIM_THRESHOLD_BYTES, 2 * value))
    return value


def release_memory() -> None:
    """Give memory that is free inside the C heap back to the operating system.

    With ONNX Runtime's arena off, every tensor is a ``malloc``; glibc keeps what is freed in
    its heaps (one per thread that allocated), so after a session load or a long block of audio
    the process keeps tens of MB it no longer uses; ``malloc_trim(0)`` returns those pages
    (bench/NOTES.md, "Memory"). A no-op where glibc is not the allocator. Each trimmed page
    that is used again costs a page fault: see :func:`release_memory_if_grown` for the
    per-window policy.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
        _level[0] = 0


# Resident pages at the first check after the last trim: the working level (0: not seen yet).
_level = [0]
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def _rss_pages() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def release_memory_if_grown(threshold_mb: float = 16.0) -> None:
    """:func:`release_memory` once the process has grown ``threshold_mb`` above its working
    level: the resident size at the first call after the last trim.

    Called after every window. A window frees what it allocated (the encoder's working set,
    tens of MB) and the next window reuses it from glibc's heap, so a steady run does not grow
    and is not trimmed; only growth beyond the level (fragmentation) is. Measured from the size
    just after a trim, every window was trimmed and faulted its working set in again
    (bench/NOTES.md, round 10).
    """
    if _malloc_trim() is None:
        return
    rss = _rss_pages()
    if not _level[0]:
        _level[0] = rss
    elif (rss - _level[0]) * _PAGE_MB > threshold_mb:
        release_memory()
