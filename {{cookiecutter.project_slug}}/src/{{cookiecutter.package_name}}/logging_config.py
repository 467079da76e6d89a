"""Structured logging: one JSON object per line (LOG_JSON=true) or plain text."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from .serving.errors import StartupFailed
from .serving.tracing import TraceIds
from .settings import Settings

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# C0 controls (newline, escape...), DEL and C1 controls: a request's path or header could
# otherwise forge a log line or send escape sequences to whoever reads the log in a terminal
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class TextFormatter(logging.Formatter):
    """Plain text: control characters in the message escaped (tracebacks keep theirs); a line
    logged inside a traced request ends with its trace and span ids."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} trace_id={trace_id} span_id={record.span_id}" if trace_id else line


class DropLoggedStartupTraceback(logging.Filter):
    """uvicorn logs a failed start-up's whole traceback; the service already said why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return StartupFailed.__name__ not in record.getMessage()


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(TraceIds())  # trace_id and span_id on lines logged inside a traced request
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropLoggedStartupTraceback) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(DropLoggedStartupTraceback())
    # requests are logged by the service's middleware, with their request id
    logging.getLogger("uvicorn.access").disabled = True
