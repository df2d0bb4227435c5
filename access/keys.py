"""The API keys of this process, in memory: digest -> KeyEntry, swapped whole on reload.

Loaded and refreshed by fleet.sync like the agent registry (the `api_keys` ConfigVersion), so
the request path never queries the database and a revoked key stops working in every worker
within one poll interval. An entry carries its expiry as a Unix timestamp, compared with the
wall clock on every lookup, so a key stops working the moment it expires, without a reload.
Use is recorded in memory and written back in batches by the poller (`last_used_at`, about once
a minute per key), never one write per request.
"""

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

KEY_PREFIX = "gk_"
PREFIX_LENGTH = 10
LAST_USED_WRITE_INTERVAL_S = 60.0


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_generate() -> str:
    """A new key: 'gk_' + 43 URL-safe characters (256 bits of randomness)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: int
    name: str
    enabled: bool
    allowed_agents: frozenset[str] | None  # None: every agent
    requests_per_minute: int | None  # None: the default limit
    allowed_empresas: frozenset[int] | None = None  # None: every empresa
    expires_at: float = math.inf  # Unix time from which the key is refused; inf: never


class KeyStore:
    def __init__(self) -> None:
        self.version = -1
        self._by_digest: Mapping[str, KeyEntry] = MappingProxyType({})
        self._ever_configured = False
        self._used: dict[int, float] = {}
        self._written: dict[int, float] = {}
        self._used_lock = threading.Lock()
        # Called after each apply that changed the keys (access.auth logs auth changes).
        self.on_change: list[Callable[[], None]] = []
        self.clock: Callable[[], float] = time.time  # the wall clock expiries are judged by

    @property
    def loaded(self) -> bool:
        return self.version >= 0

    @property
    def configured(self) -> bool:
        """A key row exists or ever existed: auth (GATEWAY_AUTH=auto) stays on when the last
        key is revoked, expires or is deleted, across restarts."""
        return self._ever_configured

    def apply(
        self,
        version: int,
        entries: Iterable[tuple[str, KeyEntry]],
        *,
        ever_configured: bool = False,
    ) -> None:
        """Install the keys read at `version`; `ever_configured`: the database remembers that a
        key row once existed (agents.services.api_keys_remember)."""
        if version < self.version:
            return
        by_digest = dict(entries)
        ever = bool(by_digest) or ever_configured
        changed = by_digest != dict(self._by_digest) or ever != self._ever_configured
        self._by_digest = MappingProxyType(by_digest)
        self._ever_configured = ever
        self.version = version
        if changed:
            for callback in self.on_change:
                callback()

    def lookup(self, digest: str) -> KeyEntry | None:
        """The enabled, unexpired entry for a presented key's `key_digest`. Looking up the
        digest, not the key, makes the lookup's timing depend on the digest, which a caller
        cannot steer toward a stored one."""
        entry = self._by_digest.get(digest)
        if entry is None or not entry.enabled or self.clock() >= entry.expires_at:
            return None
        return entry

    def mark_used(self, entry: KeyEntry) -> None:
        self._used[entry.id] = time.time()  # a dict store: atomic under the GIL

    def take_due_uses(self, now: float | None = None) -> dict[int, float]:
        """Uses not written for LAST_USED_WRITE_INTERVAL_S, removed from the pending set."""
        now = time.time() if now is None else now
        with self._used_lock:
            due = {
                key_id: used_at
                for key_id, used_at in list(self._used.items())
                if now - self._written.get(key_id, 0.0) >= LAST_USED_WRITE_INTERVAL_S
            }
            for key_id in due:
                self._used.pop(key_id, None)
                self._written[key_id] = now
        return due

    def clear(self) -> None:
        """Forget everything (tests)."""
        self.version = -1
        self._by_digest = MappingProxyType({})
        self._ever_configured = False
        self._used.clear()
        self._written.clear()
        self.clock = time.time


key_store = KeyStore()
