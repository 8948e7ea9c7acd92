"""Exceptions raised by the pipelines.  ``app/errors.py`` maps them to HTTP.

Each carries a short machine-readable ``code`` and a human message that names the
problem (what was wrong with which input), never a stack trace.
"""
from __future__ import annotations


class NuqiError(Exception):
    """Base class of every error nuqi raises on purpose."""

    code = "nuqi_error"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InputError(NuqiError):
    """The caller sent something nuqi cannot analyse (maps to 4xx)."""

    code = "bad_input"


class AudioDecodeError(InputError):
    """Bytes could not be decoded as the declared audio encoding."""

    code = "audio_decode_error"


class UnsupportedAudioError(InputError):
    """Audio decoded, but its format (rate, channels, codec) is not supported."""

    code = "unsupported_audio"


class InvalidAudioContentError(InputError):
    """Audio decoded, but its content is unusable (NaN/Inf, all silence, clipped)."""

    code = "invalid_audio_content"


class ChunkTooLargeError(InputError):
    """A chunk is longer (in seconds or bytes) than the configured maximum (maps to 413)."""

    code = "chunk_too_large"


class TextInputError(InputError):
    """Text input is unusable (too many texts, too long, wrong type)."""

    code = "bad_text_input"


class NotFoundError(NuqiError):
    """A call, alert or job id does not exist (maps to 404)."""

    code = "not_found"


class ConflictError(NuqiError):
    """The request conflicts with the current state, e.g. a chunk after the call ended (maps to 409)."""

    code = "conflict"


class ModelNotAvailableError(NuqiError):
    """A model artifact is missing or failed to load (maps to 503)."""

    code = "model_unavailable"


class LexiconError(ModelNotAvailableError):
    """A keyword lexicon file is missing or malformed (bad YAML, weight/stage out of range, bad regex)."""

    code = "lexicon_invalid"


class StoreUnavailableError(NuqiError):
    """The state store (SQLite/Redis) cannot be reached (maps to 503)."""

    code = "store_unavailable"
