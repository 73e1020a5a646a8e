"""Hardware detection: what this machine can run, and which model variant suits it."""

from audiototext.hardware.detect import HardwareProfile, detect, pick_precision

__all__ = ["HardwareProfile", "detect", "pick_precision"]
