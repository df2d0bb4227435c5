"""Gateway authentication and per-caller rate limits.

A caller presents `X-API-Key: <key>` or `Authorization: Bearer <key>` (never the query string).
Keys come from the admin (agents.ApiKey, cached in memory by access.keys.key_store, so no database
query per request) and from GATEWAY_API_KEY (one, or a comma-separated list). Whether auth is on
is `auth_state()`: GATEWAY_AUTH=on/off, or in `auto` on once any key is configured in the
environment or exists or ever existed in the admin (so deleting every key never opens the
gateway); with auth off callers are told apart by client IP for rate limiting. Env keys are
compared as SHA-256 digests with `hmac.compare_digest` against every configured key; admin keys
are found by their digest.
"""

import functools
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from access.keys import key_digest, key_store
from access.ratelimit import rate_limiter
from gateway_project.conf import gateway_settings

logger = logging.getLogger("gateway.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: `name` for logs (never the key itself), `rate_identity` for limits."""

    name: str
    rate_identity: str
    requests_per_minute: int
    allowed_agents: frozenset[str] | None = None  # None: every agent
    allowed_empresas: frozenset[int] | None = None  # None: every empresa

    def may_use(self, agent_key: str) -> bool:
        return self.allowed_agents is None or agent_key in self.allowed_agents

    def may_act_for(self, id_empresa: int | None) -> bool:
        """A key bound to empresas acts for those only (a request naming none included)."""
        return self.allowed_empresas is None or id_empresa in self.allowed_empresas


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `x-api-key` or `authorization: Bearer` (`headers` answers lower-case names)."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def auth_state() -> tuple[bool, str]:
    """(auth on?, why), from GATEWAY_AUTH and the keys configured. Read on every chat request:
    a few attribute reads, no formatting."""
    mode = gateway_settings.auth_mode
    if mode != "auto":
        return mode == "on", _FORCED[mode]
    if gateway_settings.api_keys:
        return True, "GATEWAY_API_KEY is set"
    if key_store.configured:
        return True, "API keys exist or existed in the admin"
    if not key_store.loaded:  # chat answers 503 until then (chat.pipeline.admit)
        return True, "API keys not loaded yet (database unreachable)"
    return False, "no API key configured (GATEWAY_AUTH=auto)"


_FORCED = {"on": "GATEWAY_AUTH=on", "off": "GATEWAY_AUTH=off"}


class _AuthChangeLog:
    """Logs the auth state whenever a key reload changes it (and remembers what it logged)."""

    def __init__(self) -> None:
        self.last: bool | None = None

    def __call__(self) -> None:
        on, reason = auth_state()
        if self.last is not None and on != self.last:
            logger.warning(
                "gateway auth turned %s",
                "on" if on else "off",
                extra={"event": "auth_changed", "auth": "on" if on else "off", "reason": reason},
            )
        self.last = on


auth_change_log = _AuthChangeLog()
key_store.on_change.append(auth_change_log)


def principal_for(headers: Mapping[str, str], client_ip: str) -> Principal | None:
    """The caller, or None when auth is on and no valid key was presented."""
    default_rpm = gateway_settings.rate_limit_per_minute
    if not auth_state()[0]:
        return Principal(
            name="anonymous", rate_identity=f"ip:{client_ip}", requests_per_minute=default_rpm
        )
    key = presented_key(headers)
    if key is None:
        return None
    digest = key_digest(key)  # once: the key store and GATEWAY_API_KEY both match on it
    entry = key_store.lookup(digest)
    if entry is not None:
        key_store.mark_used(entry)
        return Principal(
            name=entry.name,
            rate_identity=f"key:{entry.id}",
            requests_per_minute=entry.requests_per_minute or default_rpm,
            allowed_agents=entry.allowed_agents,
            allowed_empresas=entry.allowed_empresas,
        )
    return _env_key_principal(digest, default_rpm)


@functools.lru_cache(maxsize=4)
def _env_key_digests(keys: tuple[str, ...]) -> tuple[str, ...]:
    """GATEWAY_API_KEY's digests, computed once per setting value."""
    return tuple(key_digest(key) for key in keys)


def _env_key_principal(digest: str, requests_per_minute: int) -> Principal | None:
    """Match a presented key's digest against GATEWAY_API_KEY's; the principal is named by the
    key's position."""
    found: Principal | None = None
    for index, configured in enumerate(_env_key_digests(gateway_settings.api_keys)):
        if hmac.compare_digest(digest, configured):
            name = f"env-key-{index + 1}"
            found = Principal(
                name=name, rate_identity=name, requests_per_minute=requests_per_minute
            )
    return found


async def authenticate(headers: Mapping[str, str], client_ip: str) -> Principal | None:
    """The caller (None: 401), with one request counted against its rate limit (RateLimited:
    429). Called by the chat pipeline (chat/pipeline.py)."""
    principal = principal_for(headers, client_ip)
    if principal is not None:
        identity, per_minute = principal.rate_identity, principal.requests_per_minute
        if not rate_limiter.check_nowait(identity, per_minute):
            await rate_limiter.check(identity, per_minute)
    return principal
