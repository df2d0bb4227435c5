"""TLS to agents (runtime/tls.py) against real TLS servers on 127.0.0.1, with a throwaway CA:
a custom CA bundle, mTLS with a client certificate, verification off, and PEM that does not
load; and the egress proxy chosen from the agent or the standard variables."""

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web

from runtime.tls import TlsConfigError, TlsSpec, egress_proxy, ssl_context


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _serve(ca: trustme.CA, *, require_client_cert: bool) -> tuple[web.AppRunner, int]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    if require_client_cert:
        ca.configure_trust(server_context)
        server_context.verify_mode = ssl.CERT_REQUIRED

    async def chat(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        names = [value for kind, value in peer.get("subjectAltName", ())] if peer else []
        return web.json_response({"reply": "ok", "client": ",".join(names)})

    app = web.Application()
    app.router.add_post("/chat", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def tls_agent(ca) -> AsyncIterator[str]:
    runner, port = await _serve(ca, require_client_cert=False)
    yield f"https://127.0.0.1:{port}/chat"
    await runner.cleanup()


@pytest.fixture
async def mtls_agent(ca) -> AsyncIterator[str]:
    runner, port = await _serve(ca, require_client_cert=True)
    yield f"https://127.0.0.1:{port}/chat"
    await runner.cleanup()


async def post(url: str, tls: TlsSpec) -> dict:
    connector = aiohttp.TCPConnector(ssl=ssl_context(tls))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(5):
            response = await session.post(url, json={})
            return await response.json()


async def test_an_agent_signed_by_a_custom_ca_is_trusted_only_with_that_bundle(ca, tls_agent):
    assert (await post(tls_agent, TlsSpec(ca_bundle=ca.cert_pem.bytes().decode())))["reply"] == "ok"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await post(tls_agent, TlsSpec())  # the system's CAs do not know it


async def test_verification_off_accepts_any_certificate(tls_agent):
    assert (await post(tls_agent, TlsSpec(verify=False)))["reply"] == "ok"


async def test_mtls_presents_the_client_certificate(ca, mtls_agent):
    client = ca.issue_cert("gateway.example")
    tls = TlsSpec(
        ca_bundle=ca.cert_pem.bytes().decode(),
        client_cert=b"".join(blob.bytes() for blob in client.cert_chain_pems).decode(),
        client_key=client.private_key_pem.bytes().decode(),
    )
    assert (await post(mtls_agent, tls))["client"] == "gateway.example"
    with pytest.raises(aiohttp.ClientError):  # the agent refuses a client without one
        await post(mtls_agent, TlsSpec(ca_bundle=ca.cert_pem.bytes().decode()))


def test_pem_that_does_not_load_is_a_clear_error_and_the_key_stays_out_of_reprs(ca):
    with pytest.raises(TlsConfigError, match="CA bundle"):
        ssl_context(
            TlsSpec(ca_bundle="-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----")
        )
    other = trustme.CA().issue_cert("x")
    mine = ca.issue_cert("y")
    with pytest.raises(TlsConfigError, match="do not load together"):
        ssl_context(TlsSpec(client_cert=mine.cert_chain_pems[0].bytes().decode(),
                            client_key=other.private_key_pem.bytes().decode()))  # fmt: skip
    assert "PRIVATE" not in repr(TlsSpec(client_key=mine.private_key_pem.bytes().decode()))


def test_the_egress_proxy_is_the_agents_own_else_the_standard_variables(monkeypatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert egress_proxy("https://agent.example/chat", "") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "agent.local")
    assert egress_proxy("https://agent.example/chat", "") == "http://proxy.internal:3128"
    assert egress_proxy("http://agent.example/chat", "") is None  # no HTTP_PROXY
    assert egress_proxy("https://agent.local/chat", "") is None  # listed in NO_PROXY
    assert egress_proxy("https://agent.local/chat", "http://own:8080") == "http://own:8080"
