"""Sizes as a person reads them, for messages (alerts, refusals, logs)."""

from __future__ import annotations

__all__ = ["MIB", "human_bytes"]

MIB = 1 << 20  # the "MB" of the --…-mb settings: binary, as the OS reports memory

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``, ``2**30`` → ``"1.0 GiB"``: binary multiples, one decimal, the
    largest unit under 1024 of it; ``"N bytes"`` below 1 KiB. Never an exponent."""
    value = float(n)
    if abs(value) < 1024:
        return f"{value:.0f} bytes"
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
