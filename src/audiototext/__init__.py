"""audiototext: real-time speech-to-text on your own machine.

The public API is deliberately small; everything else lives in submodules.
"""

from __future__ import annotations

from audiototext._version import __version__
from audiototext.errors import AudioToTextError

__all__ = ["AudioToTextError", "__version__"]
