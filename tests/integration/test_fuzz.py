"""Bad input never hurts: generated and hand-picked odd requests against a real gateway process.

Every response must be in the contract's shape (JSON; `{"detail": str}` for errors, the reply
shape for 200), never a 500, a traceback or an HTML page. Example counts are bounded for CI.
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from gateway_project.api import api
from tests.conftest import GatewayProcess, LiveDatabase, start_gateway
from tests.fault_agent import FaultAgent

CHAT = "/api/agent/chat"
CONTRACT_STATUSES = {200, 400, 401, 405, 413, 429, 503}
REPLY_KEYS = {"reply", "session_id", "agent_used", "url"}
FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway process for the module, with an answering agent on every routing name used."""
    import os

    agent = FaultAgent().start()
    path = tmp_path_factory.mktemp("fuzz") / "gateway.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "DEBUG": "0",
           "SECRET_KEY": "fuzz-secret", "RATE_LIMIT_PER_MINUTE": "0",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    db = LiveDatabase(env=env)
    db.manage("migrate", "--no-input")
    db.python(
        "from agents.models import Agent\n"
        f"Agent.objects.update(url='{agent.url('/ok')}', timeout_s=2)"
    )
    gateway = start_gateway(db)
    yield gateway
    gateway.stop()
    agent.stop()


def header(response: Any, name: str) -> str:
    """A header from an httpx or a schemathesis response (whose values are lists)."""
    for key, value in response.headers.items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else value
    return ""


def assert_contract_shape(response: Any) -> None:
    status = response.status_code
    assert status in CONTRACT_STATUSES, (status, response.text[:500])
    assert header(response, "content-type").startswith("application/json")
    body = json.loads(response.content)
    if status == 200:
        assert set(body) == REPLY_KEYS
    else:
        assert set(body) == {"detail"} and isinstance(body["detail"], str)
        assert "Traceback" not in body["detail"]
    assert header(response, "x-request-id")


# -- schemathesis: requests generated from the ninja OpenAPI schema -----------------------------

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())


@schema.include(path=CHAT).parametrize()
@FUZZ_SETTINGS
def test_schema_generated_requests_get_contract_responses(case: Any, fuzz_gateway) -> None:
    response = case.call(base_url=fuzz_gateway.url, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])
    assert_contract_shape(response)


# -- hypothesis: the flexible fields and whole bodies ------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
FLEXIBLE = ["duracion_cita_minutos", "slots", "id_prospecto", "usuario_id", "id_chatbot",
            "agendar_usuario", "agendar_sucursal", "nombre_bot", "id_empresa"]  # fmt: skip


@given(
    fields=st.dictionaries(st.sampled_from(FLEXIBLE), json_values, max_size=5),
    session_id=json_values | st.integers(min_value=-(2**70), max_value=2**70),
    message=json_values,
)
@FUZZ_SETTINGS
def test_any_json_in_the_known_fields_gets_a_contract_response(
    fuzz_gateway, fields: dict[str, Any], session_id: Any, message: Any
) -> None:
    body = {"message": message, "session_id": session_id, "id_empresa": 1,
            "config": {"modalidad": "cita", **fields}}  # fmt: skip
    response = httpx.post(f"{fuzz_gateway.url}{CHAT}", json=body, timeout=10)
    assert_contract_shape(response)


@given(raw=st.binary(max_size=2048))
@FUZZ_SETTINGS
def test_arbitrary_bytes_get_a_contract_response(fuzz_gateway, raw: bytes) -> None:
    response = httpx.post(
        f"{fuzz_gateway.url}{CHAT}",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_contract_shape(response)


def _valid(**overrides: Any) -> dict[str, Any]:
    return {"message": "hola", "session_id": 1, "id_empresa": 1,
            "config": {"modalidad": "cita"}, **overrides}  # fmt: skip


def _padded(total: int) -> bytes:
    head = json.dumps(_valid())[:-1].encode() + b', "pad": "'
    return head + b"p" * (total - len(head) - 2) + b'"}'


ODD_BODIES: list[tuple[str, bytes, str, int]] = [
    ("deep nesting", b'{"message": "x", "config": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     "application/json", 400),
    ("huge number", json.dumps(_valid(session_id=10**400)).encode(), "application/json", 400),
    ("huge float", b'{"message": "x", "session_id": 1e999, "id_empresa": 1, '
     b'"config": {"modalidad": "cita"}}', "application/json", 400),
    ("invalid utf-8", b'{"message": "\xff\xfe", "session_id": 1, "id_empresa": 1, '
     b'"config": {"modalidad": "cita"}}', "application/json", 400),
    ("NaN", b'{"message": "x", "session_id": NaN, "id_empresa": 1, '
     b'"config": {"modalidad": "cita"}}', "application/json", 400),
    ("duplicate keys", b'{"message": "x", "session_id": 1, "session_id": 2, "id_empresa": 1, '
     b'"config": {"modalidad": "cita"}}', "application/json", 200),
    ("wrong content type", json.dumps(_valid()).encode(), "text/plain", 200),
    ("form encoded", b"message=x&session_id=1", "application/x-www-form-urlencoded", 400),
    ("empty body", b"", "application/json", 400),
    ("json null", b"null", "application/json", 400),
    ("json list", b"[1, 2]", "application/json", 400),
    ("lone surrogate", b'{"message": "\\ud800", "session_id": 1, "id_empresa": 1, '
     b'"config": {"modalidad": "cita"}}', "application/json", 400),
    ("511 KB", _padded(511 * 1024), "application/json", 200),
    ("513 KB", _padded(513 * 1024), "application/json", 413),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [pytest.param(b, c, s, id=name) for name, b, c, s in ODD_BODIES],
)
def test_odd_bodies(fuzz_gateway, body: bytes, content_type: str, status: int) -> None:
    response = httpx.post(
        f"{fuzz_gateway.url}{CHAT}", content=body, headers={"Content-Type": content_type},
        timeout=10,
    )  # fmt: skip
    assert_contract_shape(response)
    assert response.status_code == status, response.text[:300]
