"""Log records as JSON lines or for people (``serve --log-format json|human``).

JSON lines carry ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
``session_id`` when the record was made inside a stream's task (or passed as ``extra``), and
``exc`` with the traceback when there is one. The session id travels in a context variable:
the stream layer sets it in the tasks of a connection and of a session's event pump, and
asyncio copies it into tasks those create, so no call site has to pass it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Literal

__all__ = ["HUMAN_FORMAT", "JsonFormatter", "configure_logging", "session_context"]

LogFormat = Literal["human", "json"]

HUMAN_FORMAT = "%(levelname)s %(name)s: %(message)s"

session_context: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "audiototext_session_id", default=None
)


class SessionFilter(logging.Filter):
    """Puts the current stream's session id on the record (unless it has one already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session_id", None) is None:
            record.session_id = session_context.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        session_id = getattr(record, "session_id", None) or session_context.get()
        if session_id:
            line["session_id"] = session_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: LogFormat, level: int) -> None:
    """Replace the root logger's handlers with one on stderr in ``log_format``."""
    if log_format not in ("human", "json"):
        raise ValueError(f"--log-format must be human or json, not {log_format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(SessionFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else _HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _HumanFormatter(logging.Formatter):
    """The CLI's usual format, with ``[session]`` after the logger when there is one."""

    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        session_id = getattr(record, "session_id", None)
        if session_id and session_id not in record.getMessage():
            head, sep, rest = text.partition(": ")
            return f"{head} [{session_id}]{sep}{rest}"
        return text
