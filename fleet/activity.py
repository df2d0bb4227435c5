"""Requests and fallbacks per agent, and per empresa with a tenant row, over the last five
minutes, in this process; and per agent the last hour by minute, with latencies (fleet/series.py).

Ten-second buckets in a ring: recording is two integer increments on the event loop, and the
totals are summed when the worker publishes its state (fleet/worker_state.py), not per request.
"""

import time
from collections.abc import Callable, Iterable
from typing import Any

from fleet.series import MinuteSeries, series_published

WINDOW_S = 300
BUCKET_S = 10
_BUCKETS = WINDOW_S // BUCKET_S


class ActivityWindow:
    __slots__ = ("_clock", "_fallbacks", "_requests", "_stamps")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stamps = [-1] * _BUCKETS
        self._requests = [0] * _BUCKETS
        self._fallbacks = [0] * _BUCKETS

    def record(self, *, fallback: bool) -> None:
        stamp = int(self._clock()) // BUCKET_S
        slot = stamp % _BUCKETS
        if self._stamps[slot] != stamp:
            self._stamps[slot] = stamp
            self._requests[slot] = 0
            self._fallbacks[slot] = 0
        self._requests[slot] += 1
        if fallback:
            self._fallbacks[slot] += 1

    def totals(self) -> tuple[int, int]:
        """(requests, fallbacks) in the buckets of the last WINDOW_S seconds."""
        oldest = int(self._clock()) // BUCKET_S - _BUCKETS + 1
        live = [i for i, stamp in enumerate(self._stamps) if stamp >= oldest]
        return sum(self._requests[i] for i in live), sum(self._fallbacks[i] for i in live)


_windows: dict[str, ActivityWindow] = {}
_hours: dict[str, MinuteSeries] = {}
# Keyed by id_empresa; only empresas with a tenant row are recorded (bounded by the admin's rows).
_tenant_windows: dict[int, ActivityWindow] = {}


def activity_record(
    agent: str, *, fallback: bool, seconds: float, tenant: int | None = None
) -> None:
    """One chat answer by `agent`, `seconds` after the request arrived."""
    window = _windows.get(agent)
    if window is None:
        window = _windows[agent] = ActivityWindow()
        _hours[agent] = MinuteSeries()
    window.record(fallback=fallback)
    _hours[agent].record(fallback=fallback, seconds=seconds)
    if tenant is not None:
        tenant_window = _tenant_windows.get(tenant)
        if tenant_window is None:
            tenant_window = _tenant_windows[tenant] = ActivityWindow()
        tenant_window.record(fallback=fallback)


def activity_totals(agent: str) -> tuple[int, int]:
    window = _windows.get(agent)
    return window.totals() if window is not None else (0, 0)


def activity_series(agents: Iterable[str]) -> dict[str, Any]:
    """The last hour of these agents (those with requests), as a worker publishes it."""
    return series_published({key: _hours[key] for key in agents if key in _hours})


def tenant_activity_totals(id_empresa: int) -> tuple[int, int]:
    window = _tenant_windows.get(id_empresa)
    return window.totals() if window is not None else (0, 0)


def tenants_recorded() -> list[int]:
    """The empresas with an activity window (those that had an answer since start-up)."""
    return list(_tenant_windows)


def activity_clear() -> None:
    """Forget everything (tests)."""
    _windows.clear()
    _hours.clear()
    _tenant_windows.clear()
