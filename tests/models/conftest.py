"""Model fixtures live in support/model_fixtures.py (registered suite-wide)."""

from support.model_fixtures import make_random_whisper, read_json, rel_err

__all__ = ["make_random_whisper", "read_json", "rel_err"]
