"""Endpoint choice for agent pools (runtime/balancer.py): weights, least in flight, round robin,
session affinity with bounded loads, and outlier ejection, on an injected clock and seed."""

import random
from collections import Counter

import pytest

from bench.affinity_moves import moved_shares
from runtime.balancer import (
    AFFINITY_SESSION,
    ROUND_ROBIN,
    Balancer,
    Endpoint,
    OutlierPolicy,
)

SESSIONS = range(1, 10_001)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool(*weights: int, **options) -> Balancer:
    endpoints = [Endpoint(i, f"http://10.0.0.{i}:8000/chat", w) for i, w in enumerate(weights)]
    return Balancer(endpoints, rng=random.Random(7), **options)


def shares(balancer: Balancer, picks: int = 20_000) -> list[float]:
    counts = Counter(balancer.pick().index for _ in range(picks))
    return [counts[e.index] / picks for e in balancer.endpoints]


def test_weights_share_the_load_when_nothing_is_in_flight():
    assert shares(pool(3, 1)) == pytest.approx([0.75, 0.25], abs=0.02)


def test_the_less_busy_of_two_picks_wins():
    balancer = pool(1, 1)
    balancer.endpoints[0].inflight = 5
    # endpoint 0 only when both picks land on it: 1/4 of the time
    assert shares(balancer) == pytest.approx([0.25, 0.75], abs=0.02)


def test_round_robin_is_smooth_and_weighted():
    balancer = pool(3, 1, balance=ROUND_ROBIN)
    assert [balancer.pick().index for _ in range(8)] == [0, 0, 1, 0, 0, 0, 1, 0]


def test_a_retry_goes_to_another_endpoint():
    balancer = pool(1, 1, 1)
    for _ in range(100):
        first = balancer.pick()
        assert balancer.pick(exclude={first}) is not first


class TestSessionAffinity:
    def test_a_session_sticks_to_one_endpoint_and_sessions_spread(self):
        balancer = pool(1, 1, 1, 1, affinity=AFFINITY_SESSION)
        homes = {s: balancer.pick(session_id=s).index for s in SESSIONS}
        assert all(balancer.pick(session_id=s).index == homes[s] for s in range(1, 500))
        spread = Counter(homes.values())
        assert all(0.20 <= spread[i] / len(SESSIONS) <= 0.30 for i in range(4)), spread

    def test_adding_an_endpoint_moves_about_one_in_n_sessions(self):
        """The README's figure: one endpoint added to four moves about 1/5 of the sessions, all
        of them to the new one; one removed moves only its own."""
        four = pool(1, 1, 1, 1, affinity=AFFINITY_SESSION)
        five = pool(1, 1, 1, 1, 1, affinity=AFFINITY_SESSION)
        before = {s: four.home(s).index for s in SESSIONS}
        after = {s: five.home(s).index for s in SESSIONS}
        moved = [s for s in SESSIONS if before[s] != after[s]]
        assert 0.15 <= len(moved) / len(SESSIONS) <= 0.25
        assert {after[s] for s in moved} == {4}
        # Removing endpoint 4 again: exactly the sessions it held go back where they were.
        assert [s for s in SESSIONS if after[s] != before[s]] == moved

    @pytest.mark.parametrize("n", range(2, 9))
    def test_bench_affinity_moves_figures_hold_for_2_to_8_endpoints(self, n):
        """bench/affinity_moves.py, the README's table: adding one endpoint to n moves about
        1/(n + 1) of the sessions; removing one moves exactly its own, 1/n on average."""
        add, remove = moved_shares(n, range(1, 20_001))
        assert add == pytest.approx(1 / (n + 1), abs=0.03)
        assert remove == pytest.approx(1 / n, abs=0.005)

    def test_an_ejected_endpoint_hands_its_sessions_over_and_gets_them_back(self):
        clock = Clock()
        balancer = pool(1, 1, 1, 1, affinity=AFFINITY_SESSION, clock=clock)
        homes = {s: balancer.pick(session_id=s).index for s in range(1, 2001)}
        sick = balancer.endpoints[2]
        for _ in range(3):
            balancer.record(sick, ok=False)
        during = {s: balancer.pick(session_id=s).index for s in range(1, 2001)}
        assert 2 not in during.values()
        assert all(during[s] == homes[s] for s in homes if homes[s] != 2)  # the rest stay
        clock.now += 31
        assert {s: balancer.pick(session_id=s).index for s in range(1, 2001)} == homes

    def test_a_hot_session_spills_to_the_next_endpoint_past_the_bounded_load(self):
        balancer = pool(1, 1, 1, 1, affinity=AFFINITY_SESSION)
        home = balancer.pick(session_id=42)
        picks = []
        for _ in range(12):  # a session with 12 calls in flight at once
            endpoint = balancer.pick(session_id=42)
            endpoint.inflight += 1
            picks.append(endpoint.index)
        assert picks[0] == home.index
        assert max(e.inflight for e in balancer.endpoints) <= 4  # ceil(1.25 * 12 / 4)
        assert len(set(picks)) > 1


class TestOutlierEjection:
    def test_consecutive_failures_eject_for_a_time_that_grows(self):
        clock = Clock()
        balancer = pool(1, 1, 1, clock=clock)
        sick = balancer.endpoints[0]
        assert [balancer.record(sick, ok=False) for _ in range(3)] == [False, False, True]
        assert sick.ejected(clock.now) and not sick.ejected(clock.now + 30)
        assert all(balancer.pick().index != 0 for _ in range(200))
        clock.now += 30
        for _ in range(3):
            balancer.record(sick, ok=False)
        assert sick.ejected(clock.now + 59) and not sick.ejected(clock.now + 60)

    def test_a_success_resets_the_count_and_health_shortens_the_next_ejection(self):
        clock = Clock()
        balancer = pool(1, 1, 1, clock=clock)
        sick = balancer.endpoints[0]
        for ok in (False, False, True, False, False):
            assert not balancer.record(sick, ok=ok)
        balancer.record(sick, ok=False)  # third in a row: ejected for 30 s
        clock.now += 30 + 30  # back, and healthy for a base time
        balancer.record(sick, ok=True)
        for _ in range(3):
            balancer.record(sick, ok=False)
        assert not sick.ejected(clock.now + 30)  # 30 s again, not 60

    def test_at_most_half_of_the_endpoints_are_ejected(self):
        balancer = pool(1, 1, 1, 1, policy=OutlierPolicy(consecutive=1))
        ejected = [balancer.record(e, ok=False) for e in balancer.endpoints]
        assert ejected == [True, True, False, False]
        assert (
            pool(1, policy=OutlierPolicy(consecutive=1)).record(Endpoint(0, "u"), ok=False) is False
        )

    def test_when_every_choice_is_ejected_or_tried_one_is_used_anyway(self):
        balancer = pool(1, 1, policy=OutlierPolicy(consecutive=1))
        balancer.record(balancer.endpoints[0], ok=False)
        assert balancer.pick(exclude={balancer.endpoints[1]}).index == 0
