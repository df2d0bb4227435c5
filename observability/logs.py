"""JSON log lines on stdout, each carrying the request id of the request that wrote it, and
none of the agents' secrets (header values, TLS client keys): a line that would carry one
carries "(secret)" instead."""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from observability.context import request_context

# The JSON lines carry none of the caller's file, line, thread or process: skip looking them up
# for every record (the logging HOWTO's "Optimization" section; ~1.5 µs of a ~10 µs access line).
logging._srcfile = None  # type: ignore[attr-defined]
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False

# LogRecord's own attributes, and uvicorn's `color_message` (the message again, with ANSI codes).
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


SECRET_MARK = "(secret)"
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
# Each secret as it appears inside a JSON string (quotes, backslashes, newlines escaped). Empty
# while no agent has a secret: the formatter then costs nothing more. Longest first, so a secret
# that contains another is masked whole, not left with the other's remainder showing.
_secret_texts: tuple[str, ...] = ()


def log_secrets_add(values: Iterable[str]) -> None:
    """Secrets no log line may show from now on (the registry adds every agent's when it loads;
    kept for the process's life, so a request still using a replaced secret is covered)."""
    global _secret_texts
    texts = set(_secret_texts)
    for value in values:
        for part in (value, *value.splitlines()):  # a PEM key: also each of its lines
            part = part.strip()
            if len(part) >= MIN_SECRET_LENGTH and not part.startswith("-----"):
                texts.add(orjson.dumps(part).decode()[1:-1])
    _secret_texts = tuple(sorted(texts, key=len, reverse=True))


def _masked(line: str) -> str:
    for text in _secret_texts:
        if text in line:
            line = line.replace(text, SECRET_MARK)
    return line


class RequestIdFilter(logging.Filter):
    """Puts the request id on every line, and the request's trace id when it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = request_context.get()
        if ctx is None:
            record.request_id = "-"
        else:
            record.request_id = ctx.request_id
            if ctx.trace_id is not None:
                record.trace_id = ctx.trace_id
        return True


_second_text: tuple[int, str] = (-1, "")  # (a second since the epoch, its text to the second)


def _timestamp(created: float) -> str:
    """`created` as ISO 8601 UTC to the millisecond (datetime's isoformat, which costs more
    than the rest of a line: the text of the second is kept, and only milliseconds are added)."""
    global _second_text
    second = int(created)
    micro = round((created - second) * 1e6)  # as datetime rounds a timestamp's fraction
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached, text = _second_text
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{text}.{micro // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return _masked(line) if _secret_texts else line


def preview(text: str, limit: int) -> str | None:
    """A short preview of user text for logs, or None when previews are off (limit 0)."""
    if limit <= 0:
        return None
    return text if len(text) <= limit else text[:limit] + "…"
