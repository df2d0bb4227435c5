"""RegistrySync: keeps this process's agent registry and API keys in step with the database.

A daemon thread reads the ConfigVersion rows every REGISTRY_POLL_INTERVAL_S (one small query)
and reloads the agents or the keys when their version moved, so a change saved in any process
reaches every worker within about one interval, on SQLite and PostgreSQL alike. The saving
process does not wait for the poll: `changed` runs after its commit (agents.services'
`config_changed` signal), refreshes it at once and, when REDIS_URL is set, publishes a wake-up
that every worker's listener thread turns into an immediate poll (fleet/notify.py). If the
database is unreachable the process keeps the agents and keys it last loaded and the poller
keeps trying.

Each poll that reached the database also runs the poll duties, each its own job: the admin's
breaker resets and this worker's published state (fleet/worker_state.py), the keys' `last_used_at`
(access/services.py).
"""

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from django.db import close_old_connections, connection

from access.keys import KeyStore, key_store
from access.selectors import api_keys_load
from access.services import KeyUseWriter
from agents.models import Agent, Tenant
from agents.selectors import (
    AGENTS_VERSION,
    API_KEYS_VERSION,
    config_version_get,
    config_versions_get,
)
from fleet.notify import ChangeNotifier
from fleet.worker_state import BreakerResetFollower, WorkerStatePublisher
from gateway_project.conf import gateway_settings
from runtime import AGENT_RELATIONS, AgentRegistry, AgentSpec, TenantSpec, agent_spec_load, registry

logger = logging.getLogger("gateway.registry")


class PollDuty(Protocol):
    """A job the poll thread runs with the versions it read (None: right after a reload)."""

    def start(self) -> None: ...

    def run(self, versions: Mapping[str, int] | None) -> None: ...

    def stop(self) -> None: ...


def tenant_specs_load() -> list[TenantSpec]:
    """Every tenant row with its routes (read after the agents: a change meanwhile moves the
    version, and the next poll reloads both)."""
    tenants = Tenant.objects.prefetch_related("routes__agent", "agent_limits__agent").order_by(
        "id_empresa"
    )
    return [
        TenantSpec.from_tenant(
            tenant,
            [(r.name, r.agent.key) for r in tenant.routes.all()],
            [(limit.agent.key, limit.max_concurrency) for limit in tenant.agent_limits.all()],
        )
        for tenant in tenants
    ]


def agent_specs_load() -> tuple[int, list[AgentSpec]]:
    """Every agent as an AgentSpec, with the version it was read at (read version first, so a
    concurrent change makes the next poll reload rather than being missed)."""
    version = config_version_get()
    agents = Agent.objects.prefetch_related(*AGENT_RELATIONS).order_by("key")
    specs = [agent_spec_load(agent) for agent in agents]
    return version, specs


class RegistrySync:
    def __init__(
        self, target: AgentRegistry, keys: KeyStore, duties: Sequence[PollDuty] = ()
    ) -> None:
        self._registry = target
        self._keys = keys
        self._duties = tuple(duties)
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._notifier: ChangeNotifier | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._start_lock = asyncio.Lock()
        self.db_ok: bool | None = None
        self._answered_at = -float("inf")  # monotonic time of the last database read that worked

    @property
    def started(self) -> bool:
        return self._thread is not None

    async def ensure_started(self) -> None:
        """Load the registry and start polling, once per process (lifespan or first request)."""
        if self._thread is not None:
            return
        async with self._start_lock:
            if self._thread is None:
                self._registry.bind_loop(asyncio.get_running_loop())
                await asyncio.to_thread(self._load_once)
                await asyncio.to_thread(self._start_duties)
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._poll_forever, name="registry-sync", daemon=True
                )
                self._thread.start()
                notifier = self._notifier_for_settings()
                if notifier is not None:
                    self._listener = threading.Thread(
                        target=notifier.listen,
                        args=(self._wake.set, self._stop),
                        name="registry-notify",
                        daemon=True,
                    )
                    self._listener.start()

    def changed(self, name: str) -> None:
        """After a commit that bumped `name`: refresh this process and wake every other one."""
        self.refresh_now()
        notifier = self._notifier_for_settings()
        if notifier is not None:
            notifier.publish(name)

    def _notifier_for_settings(self) -> ChangeNotifier | None:
        url = gateway_settings.redis_url
        if not url:
            return None
        if self._notifier is None or self._notifier.url != url:
            self._notifier = ChangeNotifier(url)
        return self._notifier

    def refresh_now(self) -> None:
        """Reload at once (called after a commit in the saving process; any thread)."""
        if self._thread is not None:
            self._load_once()
            self._run_duties(None)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._start_lock = asyncio.Lock()  # the next start may be on another event loop
        thread, self._thread = self._thread, None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.join(timeout=5)
            if self._notifier is not None:
                self._notifier.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
            try:
                for duty in self._duties:
                    duty.stop()
            except Exception:
                logger.debug("a poll duty failed to stop", exc_info=True)
            finally:
                connection.close()

    @property
    def database_reachable(self) -> bool:
        """The database answered within the last 2 poll intervals. A poll stuck waiting for a
        connection (a pool's timeout, a dead server that does not refuse) counts as down once it
        has waited that long, so readiness reports an outage within 2 intervals (contract §5)."""
        window = 2 * gateway_settings.registry_poll_interval_s
        return bool(self.db_ok) and time.monotonic() - self._answered_at <= window

    def _db_answered(self) -> None:
        self.db_ok = True
        self._answered_at = time.monotonic()

    def _load_once(self) -> None:
        try:
            version, specs = agent_specs_load()
            tenants = tenant_specs_load()
            keys_version, keys_seen, keys = api_keys_load()
        except Exception:
            self._db_failed()
            return
        self._db_answered()
        self._registry.apply(version, specs, tenants)
        self._keys.apply(keys_version, keys, ever_configured=keys_seen)

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(gateway_settings.registry_poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            close_old_connections()
            try:
                versions = config_versions_get()
            except Exception:
                self._db_failed()
                continue
            self._db_answered()
            if (
                versions.get(AGENTS_VERSION, 0) != self._registry.snapshot.version
                or versions.get(API_KEYS_VERSION, 0) != self._keys.version
            ):
                self._load_once()
            self._run_duties(versions)
        connection.close()

    def _start_duties(self) -> None:
        for duty in self._duties:
            try:
                duty.start()
            except Exception:
                logger.warning("starting a poll duty failed", exc_info=True)

    def _run_duties(self, versions: Mapping[str, int] | None) -> None:
        for duty in self._duties:
            try:
                duty.run(versions)
            except Exception:
                logger.warning(
                    "a poll duty failed", exc_info=True, extra={"duty": type(duty).__name__}
                )

    def _db_failed(self) -> None:
        if self.db_ok is not False:
            logger.warning(
                "database unreachable; serving the agents last loaded",
                exc_info=True,
                extra={"event": "registry_db_error"},
            )
        self.db_ok = False
        try:
            connection.close()
        except Exception:
            logger.debug("closing a broken connection failed", exc_info=True)


# This worker's published state; /health reads which agents' breakers are open elsewhere from it.
worker_state = WorkerStatePublisher(registry)
registry_sync = RegistrySync(
    registry,
    key_store,
    duties=(BreakerResetFollower(registry), worker_state, KeyUseWriter(key_store)),
)
