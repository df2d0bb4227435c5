"""What each serving process tells the admin about its agents, and the admin's commands back.

Every serving process publishes, from its registry poller thread every PUBLISH_INTERVAL_S, one
WorkerStatus row: per agent its breaker state, calls in flight and the last five minutes'
requests and fallbacks, and per agent the last hour by minute (fleet/series.py). The admin reads
the rows of live workers (`fleet_status`, `fleet_series`), so its columns and charts show the
serving processes, not the admin process's own registry. "Reset breaker" works the other
way: the admin writes a BreakerReset row and bumps the `commands` version; each process's poller
sees the version move and closes that agent's breaker on its event loop.
"""

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Max, QuerySet
from django.utils import timezone

from agents.models import BreakerReset, WorkerStatus
from agents.selectors import COMMANDS_VERSION
from fleet.activity import (
    activity_series,
    activity_totals,
    tenant_activity_totals,
    tenants_recorded,
)
from fleet.series import HourView, series_merge
from runtime import AgentRegistry

PUBLISH_INTERVAL_S = 2.0
LIVE_WITHIN_S = 15.0
PRUNE_AFTER = timedelta(hours=1)


def worker_id() -> str:
    """host:pid, read when called (uvicorn workers are forked or spawned after import)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_state_collect(target: AgentRegistry) -> dict[str, Any]:
    agents = {}
    for key, runtime in target.snapshot.agents.items():
        requests, fallbacks = activity_totals(key)
        agents[key] = {
            "breaker": runtime.breaker.state,
            "inflight": runtime.limiter.inflight,
            "limit": runtime.limiter.limit,
            "requests_5m": requests,
            "fallbacks_5m": fallbacks,
        }
        if runtime.balancer is not None:
            now = runtime.balancer.clock()
            ejected = [e.index for e in runtime.balancer.endpoints if e.ejected(now)]
            agents[key]["ejected"] = ejected
    snapshot = target.snapshot
    tenants = {}
    # Only the empresas with something to report: calls in flight, or answers in the window
    # (a reader takes a missing one as idle). With 1,000 tenant rows, most are idle at any time.
    inflight_by: dict[int, int] = {}
    for runtime in snapshot.agents.values():
        for holder, held in runtime.limiter.holders():
            if isinstance(holder, int):  # an id_empresa (None: a request naming none)
                inflight_by[holder] = inflight_by.get(holder, 0) + held
    for id_empresa in sorted({*inflight_by, *tenants_recorded()}):
        tenant = snapshot.tenants.get(id_empresa)
        if tenant is None:
            continue
        requests, fallbacks = tenant_activity_totals(id_empresa)
        inflight = inflight_by.get(id_empresa, 0)
        if not (inflight or requests):
            continue
        tenants[str(id_empresa)] = {
            "inflight": inflight,
            "limit": tenant.slots.limit if tenant.slots is not None else None,
            "requests_5m": requests,
            "fallbacks_5m": fallbacks,
        }
    return {"agents": agents, "tenants": tenants, "series": activity_series(agents)}


def worker_state_publish(target: AgentRegistry) -> None:
    now = timezone.now()
    WorkerStatus.objects.update_or_create(
        worker_id=worker_id(), defaults={"updated_at": now, "state": worker_state_collect(target)}
    )
    WorkerStatus.objects.filter(updated_at__lt=now - PRUNE_AFTER).delete()


def worker_state_withdraw() -> None:
    """Remove this process's row (clean shutdown), so the admin stops counting it at once."""
    WorkerStatus.objects.filter(worker_id=worker_id()).delete()


class BreakerResetFollower:
    """Applies the admin's breaker resets requested after this process started (a poll duty:
    fleet/sync.py), whenever the `commands` version moved."""

    def __init__(self, target: AgentRegistry) -> None:
        self._registry = target
        self._last_seen: int | None = None
        self._commands_version: int | None = None

    def start(self) -> None:
        self.apply_new()  # the baseline: resets requested before this process started are old

    def run(self, versions: Mapping[str, int] | None) -> None:
        """None (right after a reload): look for new resets whatever the version."""
        version = None if versions is None else versions.get(COMMANDS_VERSION, 0)
        if version is not None and version == self._commands_version:
            return
        self.apply_new()
        if version is not None:
            self._commands_version = version

    def stop(self) -> None:
        return None

    def apply_new(self) -> list[str]:
        if self._last_seen is None:
            self._last_seen = BreakerReset.objects.aggregate(last=Max("id"))["last"] or 0
            return []
        resets = list(
            BreakerReset.objects.filter(id__gt=self._last_seen).values_list("id", "agent_key")
        )
        if resets:
            self._last_seen = max(reset_id for reset_id, _ in resets)
            self._registry.breakers_reset({key for _, key in resets})
        return [key for _, key in resets]


class WorkerStatePublisher:
    """Publishes this worker's WorkerStatus row every PUBLISH_INTERVAL_S from the poll thread
    (a poll duty: fleet/sync.py), reads back which agents' breakers are open in any live worker
    (for /health), and withdraws the row when the process stops."""

    def __init__(self, target: AgentRegistry) -> None:
        self._registry = target
        self._published_at = -float("inf")
        # Agents whose breaker another worker reports open (read with each publish).
        self.fleet_open_breakers: frozenset[str] = frozenset()

    def start(self) -> None:
        return None

    def run(self, versions: Mapping[str, int] | None) -> None:
        if versions is None:
            return  # a refresh in the saving thread: publishing is the poll thread's
        now = time.monotonic()
        if now - self._published_at < PUBLISH_INTERVAL_S:
            return
        self._published_at = now
        worker_state_publish(self._registry)
        self.fleet_open_breakers = fleet_open_breakers()

    def stop(self) -> None:
        worker_state_withdraw()


@dataclass
class AgentFleetView:
    """One agent across every live serving process."""

    breakers: dict[str, str] = field(default_factory=dict)  # worker id -> state
    inflight: int = 0
    limit: int = 0
    requests_5m: int = 0
    fallbacks_5m: int = 0
    ejected: set[int] = field(default_factory=set)  # a pool's endpoints ejected in any worker

    @property
    def breaker_summary(self) -> str:
        states = sorted(set(self.breakers.values()))
        if not states:
            return "no worker"
        if len(states) == 1:
            return (
                f"{states[0]} ({len(self.breakers)} worker{'s' if len(self.breakers) > 1 else ''})"
            )
        return ", ".join(
            f"{state} ×{list(self.breakers.values()).count(state)}" for state in states
        )

    @property
    def fallback_ratio(self) -> float | None:
        return self.fallbacks_5m / self.requests_5m if self.requests_5m else None


@dataclass
class TenantFleetView:
    """One empresa with a tenant row across every live serving process."""

    inflight: int = 0
    limit: int | None = None  # its max_concurrency summed over workers; None: no cap of its own
    requests_5m: int = 0
    fallbacks_5m: int = 0

    @property
    def fallback_ratio(self) -> float | None:
        return self.fallbacks_5m / self.requests_5m if self.requests_5m else None


def fleet_tenants_status(now: Any = None) -> dict[int, TenantFleetView]:
    """Every empresa with a tenant row as the live serving processes last published it."""
    now = now or timezone.now()
    views: dict[int, TenantFleetView] = {}
    rows = WorkerStatus.objects.filter(updated_at__gte=now - timedelta(seconds=LIVE_WITHIN_S))
    for row in rows:
        for id_text, state in (row.state.get("tenants") or {}).items():
            view = views.setdefault(int(id_text), TenantFleetView())
            view.inflight += int(state.get("inflight", 0))
            if state.get("limit") is not None:
                view.limit = (view.limit or 0) + int(state["limit"])
            view.requests_5m += int(state.get("requests_5m", 0))
            view.fallbacks_5m += int(state.get("fallbacks_5m", 0))
    return views


def fleet_open_breakers() -> frozenset[str]:
    """Agents whose breaker is open in at least one live serving process."""
    return frozenset(
        key for key, view in fleet_status().items() if "open" in view.breakers.values()
    )


def _live_rows(now: Any) -> QuerySet[WorkerStatus]:
    return WorkerStatus.objects.filter(updated_at__gte=now - timedelta(seconds=LIVE_WITHIN_S))


def fleet_status(now: Any = None) -> dict[str, AgentFleetView]:
    """Every agent as the live serving processes last published it."""
    now = now or timezone.now()
    views: dict[str, AgentFleetView] = {}
    # Only the "agents" part: each worker reads this every PUBLISH_INTERVAL_S (for /health),
    # and the hour's series beside it are far larger.
    for worker, agents in _live_rows(now).values_list("worker_id", "state__agents"):
        for key, state in (agents or {}).items():
            view = views.setdefault(key, AgentFleetView())
            view.breakers[worker] = str(state.get("breaker", "?"))
            view.inflight += int(state.get("inflight", 0))
            view.limit += int(state.get("limit", 0))
            view.requests_5m += int(state.get("requests_5m", 0))
            view.fallbacks_5m += int(state.get("fallbacks_5m", 0))
            view.ejected.update(int(i) for i in state.get("ejected", ()))
    return views


def fleet_series(now: Any = None) -> dict[str, HourView]:
    """Every agent's last hour, summed per minute over the live serving processes."""
    now = now or timezone.now()
    published = _live_rows(now).values_list("state__series", flat=True)
    return series_merge((series for series in published if series), now=now.timestamp())
