"""The live gauges (agent calls in flight, breaker state, concurrency limit, a pool's ejected
endpoints), read from the
registry when /metrics is scraped rather than kept as prometheus Gauges.

A deleted agent or a replaced breaker therefore has no series left to go stale. With
PROMETHEUS_MULTIPROC_DIR each worker also writes its live values to `live-<pid>.json` there every
LIVE_PUBLISH_INTERVAL_S, and a scrape adds the files of the other workers that are alive and
fresh, so a worker killed with SIGKILL stops counting at once (its pid is gone) or within
LIVE_STALE_AFTER_S.
"""

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from prometheus_client import REGISTRY, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime import STATE_VALUES, registry

logger = logging.getLogger("gateway.metrics")

LIVE_PUBLISH_INTERVAL_S = 0.5
LIVE_STALE_AFTER_S = 5.0
_LIVE_FILE = "live-{pid}.json"

# name -> (help, how workers combine: "sum" or "max")
LIVE_GAUGES: dict[str, tuple[str, str]] = {
    "gateway_inflight_requests": ("Agent calls in flight.", "sum"),
    "gateway_agent_concurrency_limit": (
        "Calls in flight allowed per agent (summed over live workers).",
        "sum",
    ),
    "gateway_circuit_breaker_state": (
        "Circuit breaker state: 0 closed, 1 open, 2 half-open (the worst among live workers).",
        "max",
    ),
    "gateway_endpoints_ejected": (
        "Endpoints of an agent pool ejected now (the most among live workers; pools only).",
        "max",
    ),
}
LiveValues = dict[str, dict[str, float]]  # gauge name -> agent key -> value


def live_values() -> LiveValues:
    """This worker's live gauges, read from its registry (any thread: reads only)."""
    agents = registry.snapshot.agents.values()
    return {
        "gateway_inflight_requests": {r.key: r.limiter.inflight for r in agents},
        "gateway_agent_concurrency_limit": {r.key: r.limiter.limit for r in agents},
        "gateway_circuit_breaker_state": {r.key: STATE_VALUES[r.breaker.state] for r in agents},
        "gateway_endpoints_ejected": {
            r.key: r.balancer.ejected_count() for r in agents if r.balancer is not None
        },
    }


def _merge(into: LiveValues, values: LiveValues) -> None:
    for name, per_agent in values.items():
        if name not in LIVE_GAUGES:
            continue
        combine = max if LIVE_GAUGES[name][1] == "max" else (lambda a, b: a + b)
        target = into.setdefault(name, {})
        for agent, value in per_agent.items():
            target[agent] = combine(target[agent], value) if agent in target else value


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed worker its supervisor has not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: trust the signal check (and the staleness bound)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _other_workers(directory: Path) -> Iterator[LiveValues]:
    """The live values other workers published, skipping dead and silent ones."""
    own = os.getpid()
    now = time.time()
    for path in directory.glob(_LIVE_FILE.format(pid="*")):
        try:
            pid = int(path.stem.removeprefix("live-"))
            if pid == own or not _alive(pid) or now - path.stat().st_mtime > LIVE_STALE_AFTER_S:
                continue
            yield json.loads(path.read_bytes())
        except (ValueError, OSError):
            continue  # a file being replaced or removed right now


class LiveGaugeCollector(Collector):
    def __init__(self, directory: str | None = None) -> None:
        self._directory = Path(directory) if directory else None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals: LiveValues = {}
        _merge(totals, live_values())
        if self._directory is not None:
            for values in _other_workers(self._directory):
                _merge(totals, values)
        for name, (help_text, _) in LIVE_GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=["agent"])
            for agent, value in sorted(totals.get(name, {}).items()):
                family.add_metric([agent], value)
            yield family


class LiveGaugePublisher:
    """Writes this worker's live values for the other workers' scrapes (multiprocess mode)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        directory = settings.PROMETHEUS_MULTIPROC_DIR
        if not directory or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(Path(directory),), name="metrics-live", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self, directory: Path) -> None:
        path = directory / _LIVE_FILE.format(pid=os.getpid())
        while not self._stop.is_set():
            try:
                scratch = path.with_suffix(".tmp")
                scratch.write_bytes(json.dumps(live_values()).encode())
                os.replace(scratch, path)  # readers see a whole file or the previous one
            except OSError:
                logger.warning("could not publish live gauges", exc_info=True)
            self._stop.wait(LIVE_PUBLISH_INTERVAL_S)
        with contextlib.suppress(OSError):
            path.unlink()


live_publisher = LiveGaugePublisher()

if not settings.PROMETHEUS_MULTIPROC_DIR:
    REGISTRY.register(LiveGaugeCollector())


def process_exit() -> None:
    """In multiprocess mode, stop publishing this worker's live gauges and remove its files."""
    live_publisher.stop()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.mark_process_dead(os.getpid())
