"""Log output: one JSON object per line for log collectors, or plain text for a terminal.

Every record becomes `{"time", "level", "logger", "message"}`, plus `exception` when one is
attached, plus the request fields the web app passes as `extra` (`request_id`, `method`, `path`,
`status`, `duration_ms`, `user`, ...) and the id of the request being served by the thread that
logs (`request_id`, read from a context variable the web app sets: the engine never imports
Flask). Text output carries the same fields as `key=value` after the message.

Who turns it on (each process configures logging once, at its entry point):

- `BACKOFFICE_LOG_FORMAT=json|text` decides wherever it is set; `BACKOFFICE_LOG_LEVEL` (default
  INFO) sets the level.
- Unset, processes whose output goes to a log collector write JSON: `backoffice scheduler` and
  the web app under gunicorn (detected by gunicorn's `SERVER_SOFTWARE`); `backoffice demo`
  writes text, for a person at a terminal. The other commands, and anything else that builds
  the app (tests, scripts), leave logging as Python has it unless the variable is set.
- Once configured, werkzeug's own request lines and APScheduler's per-tick INFO lines are
  silenced (the web app writes one line per request itself; see `webapp/ops.py`).

Secrets are never written: the web app logs no headers (so no `Authorization`, no cookies) and
redacts the values of query parameters with sensitive names; as a second line of defence
`redact` scrubs every formatted line of `Bearer ...`, `password=...`, `token: ...`-style values
and of passwords in database URLs, whatever logger wrote them, and `extra` fields with
sensitive names are written as `[redacted]`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

FORMAT_VARIABLE = "BACKOFFICE_LOG_FORMAT"
LEVEL_VARIABLE = "BACKOFFICE_LOG_LEVEL"
FORMATS = ("json", "text")

# the id of the request this thread (or task) is serving; set and reset by the web app
request_id: ContextVar[str | None] = ContextVar("backoffice_request_id", default=None)

REDACTED = "[redacted]"
# a parameter whose name contains one of these, or has one of the short ones as a part
SENSITIVE_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "authorization",
    "credential",
    "signature",
    "cookie",
    "session",
    "private",
)
SENSITIVE_PARTS = frozenset({"auth", "sig", "key", "otp", "pin", "csrf", "pwd"})
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization)[\w-]*)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"'&,;]+)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)

# attributes every LogRecord has: anything else on a record was passed as `extra`
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """`text` without bearer tokens, `password=...`-style values and passwords in URLs."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def is_sensitive(name: str) -> bool:
    """True for a parameter or field name whose value must never be logged."""
    lowered = name.lower()
    if any(word in lowered for word in SENSITIVE_WORDS):
        return True
    return any(part in SENSITIVE_PARTS for part in re.split(r"[^a-z0-9]+", lowered))


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one log line, in a stable order."""
    fields: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": redact(record.getMessage()),
    }
    current = request_id.get()
    if current is not None:
        fields["request_id"] = current
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = REDACTED if is_sensitive(key) else value
    if record.exc_info:
        fields["exception"] = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        fields["exception"] = redact(record.exc_text)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        head = f"{fields.pop('time')} {fields.pop('level')} {fields.pop('logger')}: {fields.pop('message')}"
        exception = fields.pop("exception", None)
        line = " ".join([head, *(f"{key}={value}" for key, value in fields.items())])
        return f"{line}\n{exception}" if exception else line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_handler_marker = "backoffice_log_handler"


def chosen_format(default: str | None) -> str | None:
    """The format the environment asks for, else `default` (None: leave logging alone)."""
    wanted = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if wanted in FORMATS:
        return wanted
    return default


def under_gunicorn() -> bool:
    """True in a gunicorn master or worker (its arbiter sets SERVER_SOFTWARE before loading apps)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")


def configure(default: str | None) -> str | None:
    """Send log records to stderr in the chosen format (see the module docstring); returns the
    format, or None when neither the environment nor `default` asks for one. Calling it again
    replaces the handler it installed before, never anyone else's."""
    chosen = chosen_format(default)
    if chosen is None:
        return None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _handler_marker, False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _handler_marker, True)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    level = os.environ.get(LEVEL_VARIABLE, "INFO").strip().upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    # one line per request comes from the web app (webapp.request); werkzeug's own would repeat it
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # APScheduler says "Running job ..." twice a tick at INFO: only its warnings are news
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return chosen
