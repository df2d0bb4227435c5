"""Which endpoint of an agent takes the next attempt: balancing, session affinity and outlier
ejection over an agent's replicas (issue 16).

- `least_inflight` (default): two weighted random picks, the one with fewer calls in flight
  (the power of two choices: near-least-loaded without scanning, no herd on one replica).
- `round_robin`: smooth weighted round robin (nginx's): weight 3 against 1 gives a a b a, a a b a.
- Session affinity: a session's calls go to the endpoint its `session_id` hashes to on a ring of
  virtual nodes (consistent hashing: adding or removing one of n endpoints moves about 1/n of
  the sessions), unless that endpoint is over its bounded load, ceil(1.25 × (in flight + 1) / n)
  per unit of weight: then the next endpoint on the ring takes it, so one hot session cannot
  overload a replica (consistent hashing with bounded loads, Mirrokni et al.).
- Outlier ejection, as Envoy's: `consecutive` failures (default 3) eject an endpoint for
  `base_s` × the number of times it was ejected (30 s, 60 s, ...; one step back per healthy
  `base_s`), never more than half of the endpoints at once. When every candidate is ejected or
  excluded, the ejected ones are used anyway (Envoy's panic mode): a guess beats a refusal.

Everything here runs on the event loop, between awaits: no locks. The clock is injectable.
"""

import bisect
import hashlib
import itertools
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

LEAST_INFLIGHT = "least_inflight"
ROUND_ROBIN = "round_robin"
AFFINITY_NONE = "none"
AFFINITY_SESSION = "session"
VIRTUAL_NODES = 160  # per unit of weight: keeps the ring's spread within a few percent
LOAD_FACTOR = 1.25


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive: int = 3
    base_s: float = 30.0
    max_ejected_fraction: float = 0.5


@dataclass(eq=False, slots=True)
class Endpoint:
    """One replica's live state: calls in flight and its ejection record."""

    index: int
    url: str
    weight: int = 1
    inflight: int = 0
    failures: int = 0  # consecutive
    ejections: int = 0  # the multiplier of the next ejection's length
    ejected_until: float = 0.0
    healthy_since: float = 0.0
    current_weight: int = 0  # smooth round robin's running score

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until


@dataclass(eq=False)
class Balancer:
    endpoints: Sequence[Endpoint]
    balance: str = LEAST_INFLIGHT
    affinity: str = AFFINITY_NONE
    policy: OutlierPolicy = field(default_factory=OutlierPolicy)
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _ring: list[int] = field(init=False, repr=False)
    _owners: list[Endpoint] = field(init=False, repr=False)
    _cumulative: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cumulative = list(itertools.accumulate(e.weight for e in self.endpoints))
        self._ring, self._owners = [], []
        if self.affinity == AFFINITY_SESSION:
            self._ring_build()

    def _ring_build(self) -> None:
        points = sorted(
            (_hash(f"{endpoint.url}#{replica}"), position)
            for position, endpoint in enumerate(self.endpoints)
            for replica in range(VIRTUAL_NODES * max(endpoint.weight, 1))
        )
        self._ring = [point for point, _ in points]
        self._owners = [self.endpoints[position] for _, position in points]

    def pick(self, session_id: int | None = None, exclude: Collection[Endpoint] = ()) -> Endpoint:
        """The endpoint for the next attempt; `exclude` holds the endpoints this call already
        tried (a retry goes elsewhere when it can)."""
        now = self.clock()
        if exclude:
            candidates = [e for e in self.endpoints if e not in exclude and e.ejected_until <= now]
        else:
            candidates = [e for e in self.endpoints if e.ejected_until <= now]
        if not candidates:  # panic: everything left is ejected (or tried)
            candidates = [e for e in self.endpoints if e not in exclude] or list(self.endpoints)
        if len(candidates) == 1:
            return candidates[0]
        if self.affinity == AFFINITY_SESSION and session_id is not None:
            return self._by_session(session_id, candidates)
        if self.balance == ROUND_ROBIN:
            return self._round_robin(candidates)
        first, second = self._two_weighted(candidates)
        # Fewer in flight per unit of weight wins; a tie keeps the first pick.
        return second if second.inflight * first.weight < first.inflight * second.weight else first

    def _two_weighted(self, candidates: list[Endpoint]) -> tuple[Endpoint, Endpoint]:
        """Two independent picks, each with chance weight / total (cumulative weights cached for
        the usual case: every endpoint a candidate)."""
        if len(candidates) == len(self.endpoints):
            cumulative = self._cumulative
        else:
            cumulative = list(itertools.accumulate(e.weight for e in candidates))
        total = cumulative[-1]
        random = self.rng.random
        last = len(candidates) - 1
        return (
            candidates[min(bisect.bisect(cumulative, random() * total), last)],
            candidates[min(bisect.bisect(cumulative, random() * total), last)],
        )

    def home(self, session_id: int) -> Endpoint:
        """The endpoint a session hashes to with every endpoint available and none loaded."""
        if not self._ring:
            self._ring_build()
        index = bisect.bisect(self._ring, _hash(str(session_id))) % len(self._ring)
        return self._owners[index]

    def ejected_count(self) -> int:
        now = self.clock()
        return sum(e.ejected(now) for e in self.endpoints)

    def record(self, endpoint: Endpoint, *, ok: bool) -> bool:
        """Count an attempt's outcome; True when this failure ejected the endpoint."""
        now = self.clock()
        if ok:
            endpoint.failures = 0
            if endpoint.ejections and now - endpoint.healthy_since >= self.policy.base_s:
                endpoint.ejections -= 1  # healthy for a base time: the next ejection is shorter
                endpoint.healthy_since = now
            return False
        endpoint.failures += 1
        if endpoint.failures < self.policy.consecutive or endpoint.ejected(now):
            return False
        ejected = sum(e.ejected(now) for e in self.endpoints)
        if ejected + 1 > math.floor(len(self.endpoints) * self.policy.max_ejected_fraction):
            return False
        endpoint.ejections += 1
        endpoint.ejected_until = now + self.policy.base_s * endpoint.ejections
        endpoint.healthy_since = endpoint.ejected_until
        endpoint.failures = 0
        return True

    def _by_session(self, session_id: int, candidates: list[Endpoint]) -> Endpoint:
        if not self._ring:
            self._ring_build()
        allowed = set(candidates)
        total_weight = sum(e.weight for e in candidates)
        load = sum(e.inflight for e in candidates) + 1
        start = bisect.bisect(self._ring, _hash(str(session_id)))
        fallback: Endpoint | None = None
        for step in range(len(self._ring)):
            endpoint = self._owners[(start + step) % len(self._ring)]
            if endpoint not in allowed:
                continue
            fallback = fallback or endpoint
            bound = math.ceil(LOAD_FACTOR * load * endpoint.weight / total_weight)
            if endpoint.inflight < bound:
                return endpoint
        return fallback or candidates[0]

    def _round_robin(self, candidates: list[Endpoint]) -> Endpoint:
        total = 0
        best = candidates[0]
        for endpoint in candidates:
            endpoint.current_weight += endpoint.weight
            total += endpoint.weight
            if endpoint.current_weight > best.current_weight:
                best = endpoint
        best.current_weight -= total
        return best


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
