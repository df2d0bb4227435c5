"""Gateway authentication: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

Keys come from GATEWAY_API_KEY (one, or a comma-separated list). With none configured, auth is
off and every caller is anonymous. Keys are compared as SHA-256 digests with
`hmac.compare_digest`, against every configured key, so timing says nothing about which matched.
Natively async, so ninja runs it without a thread hop.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.http import HttpRequest
from ninja.security import APIKeyHeader

from agents.conf import gateway_settings


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: `name` for logs and rate limits (never the key itself)."""

    name: str
    allowed_agents: frozenset[str] | None = None  # None: every agent

    def may_use(self, agent_key: str) -> bool:
        return self.allowed_agents is None or agent_key in self.allowed_agents


ANONYMOUS = Principal(name="anonymous")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(request: HttpRequest) -> str | None:
    headers = request.headers
    key = headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def env_key_principal(key: str) -> Principal | None:
    """Match against GATEWAY_API_KEY; the principal is named by the key's position."""
    digest = _digest(key)
    found: Principal | None = None
    for index, configured in enumerate(gateway_settings.api_keys):
        if hmac.compare_digest(digest, _digest(configured)):
            found = Principal(name=f"env-key-{index + 1}")
    return found


class GatewayKeyAuth(APIKeyHeader):
    param_name = "X-API-Key"
    is_async = True

    async def __call__(self, request: HttpRequest) -> Principal | None:  # type: ignore[override]
        if not gateway_settings.api_keys:
            return ANONYMOUS
        key = presented_key(request)
        if key is None:
            return None
        return env_key_principal(key)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        raise NotImplementedError  # __call__ does the work


gateway_key_auth = GatewayKeyAuth()
