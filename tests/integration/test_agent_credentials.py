"""Credentials and transport options per agent (issue 16 point 5), end to end through the
gateway against real local agent servers: secret headers reach the agent and nowhere else (logs,
admin pages, exports, diffs, check_agents, error details); TLS with certificates made in the
test (custom CA, unknown CA -> fallback, mTLS, verification off); the egress proxy from the agent
row and from HTTP_PROXY; key rotation with two keys."""

import asyncio
import io
import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import web
from django.core.management import call_command
from django.test import Client

from agents.checks import check_agent_secrets
from agents.models import Agent, AgentHeader
from agents.secrets import EXPORT_PREFIX, secret_decrypt, secret_encrypt, secrets_key_fingerprints
from agents.transfer import ImportRejected, agents_export, agents_import
from edge.startup_log import log_startup
from observability.logs import JsonFormatter
from tests.conftest import chat_body, in_thread
from tests.fault_agent import FaultAgent
from tests.integration.test_admin import agent_form
from versions.models import Version

CHAT = "/api/agent/chat"
AGENTS = "/admin/agents/agent/"
SECRET = "Bearer tok-9f8e7d6c5b4a-very-secret"
KEY_OLD = "old-secrets-key-0123456789abcdef0123"
KEY_NEW = "new-secrets-key-fedcba9876543210fedc"


@pytest.fixture(autouse=True)
def _secrets_key(settings: Any) -> None:
    settings.GATEWAY_SECRETS_KEYS = [KEY_OLD]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def pem(blob: trustme.Blob | list[trustme.Blob]) -> str:
    blobs = blob if isinstance(blob, list) else [blob]
    return b"".join(b.bytes() for b in blobs).decode()


def add_header(agent: Agent, name: str, value: str) -> None:
    in_thread(
        lambda: AgentHeader.objects.create(agent=agent, name=name, value=secret_encrypt(value))
    )


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as the JSON line the gateway writes."""
    formatter = JsonFormatter()
    return [formatter.format(record) for record in caplog.records]


# -- agent servers -----------------------------------------------------------------------------


class Received:
    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.health: list[web.Request] = []  # GET /health, the gateway's probes


async def start_agent(
    *, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int, Received]:
    seen = Received()

    async def chat(request: web.Request) -> web.Response:
        seen.requests.append(request)
        await request.read()
        return web.json_response({"reply": "ok"})

    async def health(request: web.Request) -> web.Response:
        seen.health.append(request)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/chat", chat)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1], seen  # type: ignore[union-attr]


def server_context(ca: trustme.CA, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if require_client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
async def tls_agent(ca: trustme.CA) -> AsyncIterator[tuple[str, Received]]:
    runner, port, seen = await start_agent(ssl_context=server_context(ca))
    yield f"https://127.0.0.1:{port}/chat", seen
    await runner.cleanup()


@pytest.fixture
async def mtls_agent(ca: trustme.CA) -> AsyncIterator[tuple[str, Received]]:
    runner, port, seen = await start_agent(ssl_context=server_context(ca, require_client_cert=True))
    yield f"https://127.0.0.1:{port}/chat", seen
    await runner.cleanup()


@pytest.fixture
async def plain_agent() -> AsyncIterator[tuple[str, Received]]:
    runner, port, seen = await start_agent()
    yield f"http://127.0.0.1:{port}/chat", seen
    await runner.cleanup()


class CountingProxy:
    """A forward proxy: CONNECT tunnels and absolute-form requests, each counted, then bytes
    piped both ways."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (method, target)
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.seen.append((method, target))
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                rest = target.split("://", 1)[1].split("/", 1)[0]
                host, port = rest.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                up_writer.write(head)  # aiohttp's server takes the absolute form
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, CountingProxy]]:
    server = CountingProxy()
    url = await server.start()
    yield url, server
    await server.stop()


# -- secret headers ------------------------------------------------------------------------------


async def test_a_secret_header_reaches_the_agent_and_no_log_line(
    gateway, make_agent, fault_agent: FaultAgent, caplog
):
    caplog.set_level(logging.DEBUG)
    cita = make_agent("cita", url=fault_agent.url("/ok"))
    add_header(cita, "Authorization", SECRET)
    failing = make_agent("venta", url=fault_agent.url("/status/500"))
    add_header(failing, "X-Api-Key", SECRET)

    ok = await gateway.post(CHAT, json=chat_body())
    assert ok.status_code == 200 and "x-gateway-fallback" not in ok.headers
    assert fault_agent.requests[-1].headers["authorization"] == SECRET
    assert fault_agent.requests[-1].headers["x-request-id"] == ok.headers["x-request-id"]

    failed = await gateway.post(CHAT, json=chat_body(config={"modalidad": "venta"}))
    assert failed.headers["x-gateway-fallback"] == "bad_status"
    assert fault_agent.requests[-1].headers["x-api-key"] == SECRET
    assert SECRET not in failed.text
    # An error that would carry it (aiohttp's request headers in an exception, say).
    logging.getLogger("gateway.agents").error("agent refused %s", {"Authorization": SECRET})

    lines = log_lines(caplog)
    assert any("agent refused" in line for line in lines)
    assert not [line for line in lines if "tok-9f8e7d6c5b4a" in line]


async def test_an_agent_header_never_replaces_the_gateways_own(gateway, make_agent, plain_agent):
    url, seen = plain_agent
    cita = make_agent("cita", url=url)
    # Rows written around the validators (the admin and the import refuse these names).
    add_header(cita, "x-request-id", "forged-request-id")
    add_header(cita, "content-type", "text/plain")
    add_header(cita, "X-Api-Key", SECRET)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    headers = seen.requests[-1].headers
    assert headers.getall("X-Request-ID") == [response.headers["x-request-id"]]
    assert headers.getall("Content-Type") == ["application/json"]
    assert headers["X-Api-Key"] == SECRET


# -- TLS -----------------------------------------------------------------------------------------


async def test_an_agent_signed_by_a_custom_ca_answers(gateway, make_agent, ca, tls_agent):
    url, seen = tls_agent
    make_agent("cita", url=url, tls_ca_bundle=pem(ca.cert_pem))
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    assert response.json()["reply"] == "ok" and len(seen.requests) == 1


async def test_health_probes_connect_as_the_agents_calls_do(gateway, make_agent, ca, tls_agent):
    """/health probes an agent behind a private CA with its CA bundle and its headers (the
    shared probe client knows neither: the agent would show as unreachable)."""
    url, seen = tls_agent
    cita = make_agent("cita", url=url, tls_ca_bundle=pem(ca.cert_pem))
    add_header(cita, "Authorization", SECRET)
    make_agent("venta", url=url)  # the same agent without the CA: unreachable
    response = await gateway.get("/health")
    assert response.json()["agents"] == {"cita": "ok", "venta": "unreachable"}
    assert [r.headers.get("Authorization") for r in seen.health] == [SECRET]
    assert SECRET not in response.text


async def test_an_unknown_ca_is_a_fallback_not_a_500(gateway, make_agent, tls_agent):
    url, seen = tls_agent
    make_agent("cita", url=url, retries=0)  # the system's CAs do not know the test CA
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == "connection"
    assert seen.requests == []


async def test_mtls_required_and_satisfied(gateway, make_agent, ca, mtls_agent):
    url, seen = mtls_agent
    client = ca.issue_cert("gateway.example")
    make_agent(
        "cita",
        url=url,
        tls_ca_bundle=pem(ca.cert_pem),
        tls_client_cert=pem(client.cert_chain_pems),
        tls_client_key=secret_encrypt(pem(client.private_key_pem)),
    )
    make_agent("venta", url=url, tls_ca_bundle=pem(ca.cert_pem), retries=0)  # no certificate
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    refused = await gateway.post(CHAT, json=chat_body(config={"modalidad": "venta"}))
    assert refused.status_code == 200
    assert refused.headers["x-gateway-fallback"] == "connection"
    assert len(seen.requests) == 1


async def test_a_stored_pem_that_does_not_load_is_a_fallback_not_a_500(
    gateway, make_agent, tls_agent
):
    url, _ = tls_agent
    make_agent("cita", url=url, tls_ca_bundle="-----BEGIN CERTIFICATE-----\nnope\n")
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == "connection"


async def test_verification_off_reaches_the_agent_and_warns(gateway, make_agent, tls_agent, caplog):
    url, seen = tls_agent
    make_agent("cita", url=url, tls_verify=False)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    assert len(seen.requests) == 1
    with caplog.at_level(logging.WARNING, logger="gateway.startup"):
        log_startup()
    assert any(getattr(r, "event", "") == "tls_verify_off" for r in caplog.records)


# -- egress proxy --------------------------------------------------------------------------------


async def test_the_agents_proxy_url_carries_its_requests(gateway, make_agent, ca, tls_agent, proxy):
    url, seen = tls_agent
    proxy_url, counting = proxy
    make_agent("cita", url=url, tls_ca_bundle=pem(ca.cert_pem), proxy_url=proxy_url)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    port = url.split(":")[2].split("/")[0]
    assert counting.seen == [("CONNECT", f"127.0.0.1:{port}")]
    assert len(seen.requests) == 1


async def test_http_proxy_from_the_environment(
    gateway, make_agent, plain_agent, proxy, monkeypatch
):
    url, seen = plain_agent
    proxy_url, counting = proxy
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    make_agent("cita", url=url)
    response = await gateway.post(CHAT, json=chat_body())
    assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
    assert counting.seen == [("POST", url)]
    assert len(seen.requests) == 1


# -- the admin -----------------------------------------------------------------------------------


@pytest.fixture
def cita(transactional_db: Any) -> Agent:
    Agent.objects.all().delete()
    return Agent.objects.create(key="cita", name="Cita", url="http://127.0.0.1:9/chat")


def headers_form(agent: Agent, rows: list[tuple[int | None, str, str]]) -> dict[str, Any]:
    form = agent_form(agent)
    form["headers-TOTAL_FORMS"] = len(rows)
    for index, (pk, name, value) in enumerate(rows):
        form[f"headers-{index}-agent"] = agent.pk
        form[f"headers-{index}-name"] = name
        form[f"headers-{index}-value"] = value
        if pk is not None:
            form[f"headers-{index}-id"] = pk
    return form


def test_admin_header_values_are_write_only(admin_client: Client, cita: Agent) -> None:
    page = admin_client.post(
        f"{AGENTS}{cita.pk}/change/", headers_form(cita, [(None, "Authorization", SECRET)])
    )
    assert page.status_code == 302
    header = AgentHeader.objects.get(agent=cita)
    assert secret_decrypt(header.value) == SECRET and SECRET not in header.value

    html = admin_client.get(f"{AGENTS}{cita.pk}/change/").content.decode()
    assert "Authorization" in html and "(secret) stored" in html
    assert "tok-9f8e7d6c5b4a" not in html and header.value.split(":")[1] not in html

    # Blank on edit keeps the stored value; a new value replaces it.
    kept = headers_form(cita, [(header.pk, "Authorization", "")])
    assert admin_client.post(f"{AGENTS}{cita.pk}/change/", kept).status_code == 302
    assert AgentHeader.objects.get(pk=header.pk).value == header.value
    replaced = headers_form(cita, [(header.pk, "Authorization", "Bearer other-token-1234")])
    assert admin_client.post(f"{AGENTS}{cita.pk}/change/", replaced).status_code == 302
    assert secret_decrypt(AgentHeader.objects.get(pk=header.pk).value) == "Bearer other-token-1234"

    # A form that comes back with errors does not echo the typed value either.
    twice = headers_form(cita, [(header.pk, "Authorization", ""), (None, "authorization", "x")])
    page = admin_client.post(f"{AGENTS}{cita.pk}/change/", twice)
    assert page.status_code == 200 and "appears twice" in page.content.decode()
    bad = headers_form(cita, [(header.pk, "Authorization", SECRET), (None, "Host", SECRET)])
    page = admin_client.post(f"{AGENTS}{cita.pk}/change/", bad)
    assert page.status_code == 200 and "set by the gateway" in page.content.decode()
    assert "tok-9f8e7d6c5b4a" not in page.content.decode()


def test_admin_client_key_is_write_only_and_pem_is_checked(
    admin_client: Client, cita: Agent, ca: trustme.CA
) -> None:
    client = ca.issue_cert("gateway.example")
    key = pem(client.private_key_pem)
    form = agent_form(
        cita,
        tls_ca_bundle=pem(ca.cert_pem),
        tls_client_cert=pem(client.cert_chain_pems),
        tls_client_key=key,
    )
    assert admin_client.post(f"{AGENTS}{cita.pk}/change/", form).status_code == 302
    cita.refresh_from_db()
    assert secret_decrypt(cita.tls_client_key).strip() == key.strip()
    html = admin_client.get(f"{AGENTS}{cita.pk}/change/").content.decode()
    body_line = key.splitlines()[1]
    assert body_line not in html and cita.tls_client_key not in html
    assert "(secret) stored" in html

    stored = cita.tls_client_key
    assert admin_client.post(f"{AGENTS}{cita.pk}/change/", agent_form(cita)).status_code == 302
    cita.refresh_from_db()
    assert cita.tls_client_key == stored  # blank: kept

    other = ca.issue_cert("other.example")  # a key that is not the certificate's
    page = admin_client.post(
        f"{AGENTS}{cita.pk}/change/", agent_form(cita, tls_client_key=pem(other.private_key_pem))
    )
    assert page.status_code == 200
    assert "do not load together" in page.content.decode()
    assert other.private_key_pem.bytes().decode().splitlines()[1] not in page.content.decode()
    page = admin_client.post(
        f"{AGENTS}{cita.pk}/change/",
        agent_form(cita, tls_ca_bundle="-----BEGIN CERTIFICATE-----\nx\n"),
    )
    assert page.status_code == 200 and "CA bundle does not load" in page.content.decode()


def test_admin_warns_when_tls_verification_is_off(admin_client: Client, cita: Agent) -> None:
    page = admin_client.post(
        f"{AGENTS}{cita.pk}/change/", agent_form(cita, tls_verify=""), follow=True
    )
    assert "TLS verification is OFF" in page.content.decode()
    cita.refresh_from_db()
    assert cita.tls_verify is False
    assert (
        "TLS verification is OFF" in admin_client.get(f"{AGENTS}{cita.pk}/change/").content.decode()
    )
    listed = admin_client.get(AGENTS).content.decode()
    assert "TLS verification is off for cita" in listed


# -- export, import, diff, check_agents ---------------------------------------------------------


def test_export_writes_secrets_encrypted_and_import_restores_them(
    cita: Agent, ca: trustme.CA
) -> None:
    client = ca.issue_cert("gateway.example")
    key = pem(client.private_key_pem)
    AgentHeader.objects.create(agent=cita, name="Authorization", value=secret_encrypt(SECRET))
    cita.tls_client_cert = pem(client.cert_chain_pems)
    cita.tls_client_key = secret_encrypt(key)
    cita.save()
    (row,) = agents_export()
    assert "tok-9f8e7d6c5b4a" not in json.dumps(row)
    assert key.splitlines()[1] not in json.dumps(row)
    stored = AgentHeader.objects.get(agent=cita).value
    assert row["headers"] == {"Authorization": EXPORT_PREFIX + stored}
    assert row["tls_client_key"] == EXPORT_PREFIX + cita.tls_client_key
    assert "tls_verify" not in row and "proxy_url" not in row  # defaults are left out

    # The same plain value, or the exported form, is no change.
    plain = {**row, "headers": {"Authorization": SECRET}}
    assert agents_import([plain]).unchanged == ["cita"]
    assert agents_import([row]).unchanged == ["cita"]
    assert AgentHeader.objects.get(agent=cita).value == stored

    # Into an empty database: the exported form restores the secret as it was.
    Agent.objects.all().delete()
    assert agents_import([row]).created == ["cita"]
    assert secret_decrypt(AgentHeader.objects.get(agent__key="cita").value) == SECRET
    assert secret_decrypt(Agent.objects.get(key="cita").tls_client_key) == key
    assert agents_export() == [row]
    # The plain key imports too (encrypted on import), as no change.
    assert agents_import([{**row, "tls_client_key": key}]).unchanged == ["cita"]

    # A new plain value is encrypted; a header left out of `headers` is removed.
    agents_import([{**row, "headers": {"X-Api-Key": "k-12345678"}}])
    (header,) = AgentHeader.objects.filter(agent__key="cita")
    assert header.name == "X-Api-Key" and secret_decrypt(header.value) == "k-12345678"


def test_import_names_the_key_an_encrypted_secret_needs(settings: Any, cita: Agent) -> None:
    stored = secret_encrypt(SECRET)
    fingerprint = secrets_key_fingerprints()[0]
    settings.GATEWAY_SECRETS_KEYS = [KEY_NEW]
    row = {"key": "cita", "headers": {"X-Api-Key": EXPORT_PREFIX + stored}}
    with pytest.raises(ImportRejected) as rejected:
        agents_import([row])
    assert rejected.value.errors == [
        f"row 1 (cita): headers: X-Api-Key: encrypted with key {fingerprint}, "
        "which GATEWAY_SECRETS_KEYS does not hold"
    ]
    with pytest.raises(ImportRejected) as rejected:
        agents_import([{"key": "cita", "headers": {"Host": "x"}, "tls_ca_bundle": "nope"}])
    assert "headers: Host: Host is set by the gateway" in rejected.value.errors[0]
    with pytest.raises(ImportRejected) as rejected:
        agents_import([{"key": "cita", "headers": {"X-Api-Key": "a-value", "x-api-key": "b"}}])
    assert "the same header twice" in rejected.value.errors[0]
    with pytest.raises(ImportRejected) as rejected:
        agents_import([{"key": "cita", "tls_ca_bundle": "-----BEGIN CERTIFICATE-----\nx\n"}])
    (error,) = rejected.value.errors
    assert error.startswith("row 1 (cita): tls_ca_bundle: The CA bundle does not load")


def test_versions_diff_and_check_agents_never_show_a_secret(
    admin_client: Client, cita: Agent
) -> None:
    admin_client.post(
        f"{AGENTS}{cita.pk}/change/", headers_form(cita, [(None, "X-Api-Key", SECRET)])
    )
    header = AgentHeader.objects.get(agent=cita)
    admin_client.post(
        f"{AGENTS}{cita.pk}/change/", headers_form(cita, [(header.pk, "X-Api-Key", SECRET + "2")])
    )
    version = Version.objects.order_by("-pk").first()
    assert version is not None
    fields = [f for change in version.changes for f in change["fields"]]
    assert {"field": "headers", "before": {"X-Api-Key": "(secret)"},
            "after": {"X-Api-Key": "(secret changed)"}} in fields  # fmt: skip
    token = AgentHeader.objects.get(agent=cita).value.split(":")[1]
    for url in (f"/admin/versions/version/{version.pk}/change/", "/admin/versions/version/",
                f"{AGENTS}{cita.pk}/history/"):  # fmt: skip
        html = admin_client.get(url).content.decode()
        assert "tok-9f8e7d6c5b4a" not in html and token not in html, url

    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        call_command("check_agents", "--json", "--timeout", "0.5", stdout=out, stderr=err)
    assert "tok-9f8e7d6c5b4a" not in out.getvalue() + err.getvalue()


# -- rotation ------------------------------------------------------------------------------------


def test_rotation_with_two_keys(settings: Any, cita: Agent, ca: trustme.CA, capsys) -> None:
    client = ca.issue_cert("gateway.example")
    AgentHeader.objects.create(agent=cita, name="X-Api-Key", value=secret_encrypt(SECRET))
    cita.tls_client_cert = pem(client.cert_chain_pems)
    cita.tls_client_key = secret_encrypt(pem(client.private_key_pem))
    cita.save()
    old = secrets_key_fingerprints()[0]

    settings.GATEWAY_SECRETS_KEYS = [KEY_NEW, KEY_OLD]  # the new key first; the old still reads
    new = secrets_key_fingerprints()[0]
    assert secret_decrypt(AgentHeader.objects.get(agent=cita).value) == SECRET
    before = Version.objects.count()
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert f"re-encrypted 2 secret(s) with key {new}; 0 already used it" in out.getvalue()
    assert Version.objects.count() == before + 1
    header, cita = AgentHeader.objects.get(agent=cita), Agent.objects.get(pk=cita.pk)
    assert header.value.startswith(f"{new}:") and cita.tls_client_key.startswith(f"{new}:")
    assert old != new

    settings.GATEWAY_SECRETS_KEYS = [KEY_NEW]  # the old key dropped
    assert secret_decrypt(header.value) == SECRET
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "re-encrypted 0 secret(s)" in out.getvalue() and "2 already used it" in out.getvalue()


def test_secrets_no_key_reads_are_listed(settings: Any, cita: Agent) -> None:
    AgentHeader.objects.create(agent=cita, name="X-Api-Key", value=secret_encrypt(SECRET))
    fingerprint = secrets_key_fingerprints()[0]
    settings.GATEWAY_SECRETS_KEYS = [KEY_NEW]
    (error,) = check_agent_secrets(databases=["default"])
    assert error.id == "agents.E003" and fingerprint in error.msg and "cita" in error.msg
    with pytest.raises(Exception, match=fingerprint):
        call_command("rotate_secrets", stdout=io.StringIO())


def test_the_start_up_log_warns_when_the_key_is_derived(settings: Any, caplog) -> None:
    settings.GATEWAY_SECRETS_KEYS = []
    with caplog.at_level(logging.WARNING, logger="gateway.startup"):
        log_startup()
    assert any(getattr(r, "event", "") == "secrets_key_derived" for r in caplog.records)
