"""The last hour per agent, one bucket per wall-clock minute: requests, fallbacks and a latency
histogram; and, for the admin's charts, the merge of every live worker's buckets.

Worker side (`MinuteSeries`): a ring of 60 minutes. Recording reads the clock, finds the latency
bucket with one C-level bisect and adds to three integers; a slot is zeroed when the ring comes
back to it a new minute later. No lock: the event loop records, the publisher thread copies the
lists under the GIL, and a publish torn by a rollover is corrected by the next one (2 s later).

Reader side (`series_merge`): minutes are wall-clock minutes (Unix time // 60), so workers
started at different times, or on different hosts, line up minute for minute. Latency buckets
have fixed bounds (LATENCY_BOUNDS_MS, Prometheus' `le` meaning): merged by adding counts, then
the 95th percentile is read from the merged histogram with linear interpolation inside its
bucket, as Prometheus' `histogram_quantile` does. Percentiles themselves cannot be merged.
"""

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MINUTE_S = 60
HOUR_MINUTES = 60
# Upper bounds of the latency buckets, ms; one more bucket counts what is above the last.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 75, 100, 150, 250, 400, 600, 800, 1000, 1500, 2000, 3000,
                     5000, 8000, 12000, 20000, 30000, 60000)  # fmt: skip
_BOUNDS_S = tuple(bound / 1000 for bound in LATENCY_BOUNDS_MS)
_BUCKETS = len(LATENCY_BOUNDS_MS) + 1
_ZEROS = [0] * _BUCKETS

# One published minute: [minute, requests, fallbacks, latency counts (trailing zeros dropped)].
PublishedMinute = list[Any]


class MinuteSeries:
    __slots__ = ("_clock", "_fallbacks", "_latency", "_minutes", "_requests")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minutes = [-1] * HOUR_MINUTES
        self._requests = [0] * HOUR_MINUTES
        self._fallbacks = [0] * HOUR_MINUTES
        self._latency = [0] * (HOUR_MINUTES * _BUCKETS)  # slot-major: slot * _BUCKETS + bucket

    def record(self, *, fallback: bool, seconds: float) -> None:
        minute = int(self._clock()) // MINUTE_S
        slot = minute % HOUR_MINUTES
        if self._minutes[slot] != minute:
            self._minutes[slot] = minute
            self._requests[slot] = 0
            self._fallbacks[slot] = 0
            self._latency[slot * _BUCKETS : (slot + 1) * _BUCKETS] = _ZEROS
        self._requests[slot] += 1
        if fallback:
            self._fallbacks[slot] += 1
        self._latency[slot * _BUCKETS + bisect_left(_BOUNDS_S, seconds)] += 1

    def published(self) -> list[PublishedMinute]:
        """The minutes of the last hour that had requests, oldest first (JSON-ready)."""
        oldest = int(self._clock()) // MINUTE_S - HOUR_MINUTES + 1
        minutes = []
        for slot, minute in sorted(enumerate(self._minutes), key=lambda item: item[1]):
            if minute < oldest or not self._requests[slot]:
                continue
            counts = self._latency[slot * _BUCKETS : (slot + 1) * _BUCKETS]
            while counts and not counts[-1]:
                counts.pop()
            minutes.append([minute, self._requests[slot], self._fallbacks[slot], counts])
        return minutes


def histogram_quantile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (ms) of a histogram over LATENCY_BOUNDS_MS; None when it is empty."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket, count in enumerate(counts):
        if count and seen + count >= rank:
            if bucket >= len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])  # above the last bound: the bound itself
            lower = LATENCY_BOUNDS_MS[bucket - 1] if bucket else 0
            return lower + (LATENCY_BOUNDS_MS[bucket] - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])  # unreachable for q <= 1


@dataclass(frozen=True)
class HourView:
    """One agent's last hour across the live workers, one entry per minute, oldest first; the
    last is the current (partial) minute, `end_minute`."""

    end_minute: int
    requests: list[int]
    fallbacks: list[int]
    latency: list[list[int]]  # merged histogram per minute

    @classmethod
    def empty(cls, end_minute: int) -> "HourView":
        return cls(
            end_minute,
            [0] * HOUR_MINUTES,
            [0] * HOUR_MINUTES,
            [[0] * _BUCKETS for _ in range(HOUR_MINUTES)],
        )

    @property
    def p95_ms(self) -> list[float | None]:
        return [histogram_quantile(counts, 0.95) for counts in self.latency]

    @property
    def fallback_ratio(self) -> list[float | None]:
        return [f / r if r else None for r, f in zip(self.requests, self.fallbacks, strict=True)]

    @property
    def hour_p95_ms(self) -> float | None:
        return histogram_quantile([sum(column) for column in zip(*self.latency, strict=True)], 0.95)


def series_merge(published: Iterable[Mapping[str, Any]], *, now: float) -> dict[str, HourView]:
    """Every agent's minutes from each worker's published `series`, summed per wall-clock
    minute over the hour ending at `now` (Unix time). A worker whose latency bounds differ
    (another release during a rollout) adds its requests and fallbacks but no latency."""
    end = int(now) // MINUTE_S
    start = end - HOUR_MINUTES + 1
    views: dict[str, HourView] = {}
    own_bounds = list(LATENCY_BOUNDS_MS)
    for series in published:
        same_bounds = series.get("latency_bounds_ms") == own_bounds
        for key, minutes in (series.get("agents") or {}).items():
            view = views.get(key)
            if view is None:
                view = views[key] = HourView.empty(end)
            for minute, requests, fallbacks, counts in minutes:
                if not start <= minute <= end:
                    continue
                index = minute - start
                view.requests[index] += int(requests)
                view.fallbacks[index] += int(fallbacks)
                if same_bounds:
                    merged = view.latency[index]
                    for bucket, count in enumerate(counts[:_BUCKETS]):
                        merged[bucket] += int(count)
    return views


def series_published(series: Mapping[str, MinuteSeries]) -> dict[str, Any]:
    """What a worker publishes: its bounds, and each agent's minutes with requests."""
    return {
        "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
        "agents": {key: minutes for key, one in series.items() if (minutes := one.published())},
    }
