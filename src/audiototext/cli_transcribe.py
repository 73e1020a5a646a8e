"""``audiototext transcribe``: file transcription (placeholder until the engine lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``transcribe`` command to the CLI's sub-parsers."""
    p = sub.add_parser("transcribe", help="transcribe audio files (not available yet)")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("error: file transcription is not available in this version yet")
    return 1
