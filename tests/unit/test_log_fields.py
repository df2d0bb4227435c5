"""`log_fields`, the access line's writer: when the configured JSON handler is the only one, it
writes exactly the line logging would (field order included), and it goes through logging
whenever anything else could see the record."""

import io
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from observability.context import RequestContext, request_context
from observability.logs import (
    JsonFormatter,
    RequestIdFilter,
    _sole_json_handler,
    log_fields,
    log_secrets_add,
)

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "event": "request",
    "method": "POST",
    "path": "/api/agent/chat",
    "status": 200,
    "agent": "cita",
    "key": "env-key-1",
    "session_id": 3796,
    "id_empresa": None,
    "duration_ms": 0.41,
    "outcome": "ok",
    "failover": None,
    "message_preview": "Quiero a…",
}
_TS = re.compile(r'"ts":"[^"]+"')


def _json_handler(stream: io.StringIO) -> logging.StreamHandler[io.StringIO]:
    """The handler the LOGGING setting configures, writing to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


@pytest.fixture
def configured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger outside the process's hierarchy whose one handler is the JSON one, on its parent
    (as the LOGGING setting puts it on the root)."""
    stream = io.StringIO()
    root = logging.Logger("root", logging.DEBUG)
    root.addHandler(_json_handler(stream))
    logger = logging.Logger("gateway.access", logging.NOTSET)
    logger.parent = root
    yield logger, stream


def _both_ways(logger: logging.Logger, stream: io.StringIO, level: int) -> tuple[str, str]:
    """(the line log_fields wrote, the line logging wrote), their timestamps blanked."""
    log_fields(logger, level, "request", dict(FIELDS))
    fast = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    logger.log(level, "request", extra=dict(FIELDS))
    slow = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    assert fast.endswith("\n") and fast.count("\n") == 1
    return _TS.sub('"ts":"-"', fast), _TS.sub('"ts":"-"', slow)


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_the_line_is_the_one_logging_writes(configured, level) -> None:
    logger, stream = configured
    assert _sole_json_handler(logger) is not None
    fast, slow = _both_ways(logger, stream, level)  # outside a request: request_id "-"
    assert fast == slow and '"request_id":"-"' in fast
    ctx = RequestContext(request_id="n8n-run-77", trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    token = request_context.set(ctx)
    try:
        fast, slow = _both_ways(logger, stream, level)
    finally:
        request_context.reset(token)
    assert fast == slow
    assert fast.endswith(
        '"request_id":"n8n-run-77","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}\n'
    )


def test_a_secret_is_masked_on_the_fast_line_too(configured) -> None:
    logger, stream = configured
    log_secrets_add(["preview-secret-value-9"])
    fields = dict(FIELDS, message_preview="preview-secret-value-9")
    log_fields(logger, logging.INFO, "request", fields)
    assert "preview-secret-value-9" not in stream.getvalue()
    assert '"message_preview":"(secret)"' in stream.getvalue()


def test_a_second_handler_gets_the_record_through_logging(configured) -> None:
    logger, stream = configured
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Capture())
    assert _sole_json_handler(logger) is None
    log_fields(logger, logging.INFO, "request", dict(FIELDS))
    assert [(r.getMessage(), r.status, r.agent) for r in records] == [("request", 200, "cita")]  # type: ignore[attr-defined]
    assert '"agent":"cita"' in stream.getvalue()


def test_levels_and_filters_are_respected(configured) -> None:
    logger, stream = configured
    assert logger.parent is not None
    logger.parent.handlers[0].setLevel(logging.INFO)
    log_fields(logger, logging.DEBUG, "request", dict(FIELDS))
    logger.setLevel(logging.WARNING)
    log_fields(logger, logging.INFO, "request", dict(FIELDS))
    assert stream.getvalue() == ""
    logger.setLevel(logging.NOTSET)
    logger.addFilter(lambda record: False)  # a logger's filter sees every record
    assert _sole_json_handler(logger) is None
    log_fields(logger, logging.INFO, "request", dict(FIELDS))
    assert stream.getvalue() == ""


def test_the_logging_setting_takes_the_direct_way() -> None:
    """Under the LOGGING setting (a fresh process: pytest adds handlers of its own here), the
    access logger's one handler is the JSON one."""
    code = (
        "import django, logging; django.setup()\n"
        "from observability.logs import _sole_json_handler\n"
        "print(_sole_json_handler(logging.getLogger('gateway.access')) is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "gateway_project.settings", "DEBUG": "1", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "True"
