"""The audiototext error tree.

Every error the package raises on purpose derives from :class:`AudioToTextError` and carries a
message a person can act on. Adapters (CLI, gRPC, HTTP) map these classes to exit codes and
status codes; anything else escaping is a bug.

::

    AudioToTextError
    ├── ConfigError                 bad setting, flag or environment variable
    ├── ModelError                  anything about models
    │   ├── UnknownModelError       name not in the registry and not a Hugging Face repo id
    │   ├── NotWhisperError         the repo exists but holds no Whisper-architecture model
    │   ├── RevisionNotFoundError   the pinned revision (branch, tag, commit) does not exist
    │   ├── DownloadError           network unreachable, offline mode, HTTP failure
    │   ├── IntegrityError          a file does not match its recorded hash
    │   ├── ConversionError         a checkpoint could not be turned into ONNX
    │   ├── ValidationError         a converted model disagrees with its reference
    │   ├── CacheError              cache not writable, disk full, manifest unreadable
    │   └── ModelNotCachedError     asked for a model that has not been pulled
    └── AudioError                  audio input that cannot be decoded or used
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "AudioToTextError",
    "CacheError",
    "ConfigError",
    "ConversionError",
    "DownloadError",
    "IntegrityError",
    "ModelError",
    "ModelNotCachedError",
    "NotWhisperError",
    "RevisionNotFoundError",
    "UnknownModelError",
    "ValidationError",
]


class AudioToTextError(Exception):
    """Base class of every deliberate audiototext error."""


class ConfigError(AudioToTextError, ValueError):
    """A setting, flag or environment variable has a value we cannot use."""


class ModelError(AudioToTextError):
    """Something went wrong finding, fetching, converting or loading a model."""


class UnknownModelError(ModelError, LookupError):
    """The model name is neither a registry short name nor a Hugging Face repo id."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class NotWhisperError(ModelError):
    """The repository exists but does not hold a Whisper-architecture model."""


class RevisionNotFoundError(ModelError):
    """The requested revision does not exist in the repository."""


class DownloadError(ModelError):
    """The files could not be downloaded (network, offline mode, HTTP error)."""


class IntegrityError(ModelError):
    """A file's content does not match the hash recorded for it."""


class ConversionError(ModelError):
    """A checkpoint could not be converted to ONNX."""


class ValidationError(ModelError):
    """A converted model's outputs disagree with the reference beyond the tolerance."""


class CacheError(ModelError):
    """The model cache cannot be read or written (permissions, disk full, bad manifest)."""


class ModelNotCachedError(ModelError, LookupError):
    """The model has not been pulled into the cache yet."""


class AudioError(AudioToTextError, ValueError):
    """Audio input that cannot be decoded, is empty, or is otherwise unusable."""
