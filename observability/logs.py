"""JSON log lines on stdout, each carrying the request id of the request that wrote it, and
none of the agents' secrets (header values, TLS client keys): a line that would carry one
carries "(secret)" instead."""

import logging
import time
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


def _add_request_ids(fields: dict[str, Any]) -> None:
    ctx = request_context.get()
    if ctx is None:
        fields["request_id"] = "-"
    else:
        fields["request_id"] = ctx.request_id
        if ctx.trace_id is not None:
            fields["trace_id"] = ctx.trace_id


class RequestIdFilter(logging.Filter):
    """Puts the request id on every line, and the request's trace id when it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        _add_request_ids(record.__dict__)
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


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, msg, extra=fields)`, for a line written on every request (the access
    line). When the one handler it would reach is the configured JSON one, the same line is built
    and written to that handler's stream directly: a LogRecord, the logger hierarchy and the
    generic formatter cost ~10 µs of a request, this ~5 µs (bench/README.md, "Issue 15: the last
    cuts").
    Otherwise (a test capturing records, another configuration) it goes through logging."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_json_handler(logger)
    if handler is None or level < handler.level:
        logger.log(level, msg, extra=fields)
        return
    entry: dict[str, Any] = {
        "ts": _timestamp(time.time()),
        "level": logging.getLevelName(level).lower(),
        "logger": logger.name,
        "msg": msg,
        **fields,
    }
    _add_request_ids(entry)
    line = orjson.dumps(entry, default=str).decode()
    if _secret_texts:
        line = _masked(line)
    try:
        with handler.lock:  # type: ignore[union-attr]  # a StreamHandler always has its lock
            handler.stream.write(line + handler.terminator)
            handler.stream.flush()
    except Exception:  # as StreamHandler.emit: a closed stdout must not fail the request
        handler.handleError(logger.makeRecord(logger.name, level, "", 0, msg, (), None))


def _sole_json_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler `logger`'s records reach when it is the only one, a plain StreamHandler with
    the JSON formatter and the request-id filter alone (the LOGGING setting); else None."""
    if logger.filters:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if (
        type(found) is logging.StreamHandler
        and type(found.formatter) is JsonFormatter
        and len(found.filters) == 1
        and type(found.filters[0]) is RequestIdFilter
    ):
        return found
    return None


def preview(text: str, limit: int) -> str | None:
    """A short preview of user text for logs, or None when previews are off (limit 0)."""
    if limit <= 0:
        return None
    return text if len(text) <= limit else text[:limit] + "…"
