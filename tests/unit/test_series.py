import pytest

from fleet.series import (
    HOUR_MINUTES,
    LATENCY_BOUNDS_MS,
    MINUTE_S,
    MinuteSeries,
    histogram_quantile,
    series_merge,
    series_published,
)

START = 1_800_000_000.0  # a wall-clock minute boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def merged(*workers: tuple[Clock, MinuteSeries], now: float):
    """What the admin sees: each worker publishes with its own clock, the reader merges."""
    return series_merge([series_published({"cita": series}) for _, series in workers], now=now)


def test_a_new_minute_starts_a_new_bucket_and_keeps_the_last():
    clock = Clock()
    series = MinuteSeries(clock)
    series.record(fallback=False, seconds=0.02)
    series.record(fallback=True, seconds=0.02)
    clock.now += MINUTE_S - 0.5  # still the first minute
    series.record(fallback=False, seconds=0.02)
    clock.now += 1  # the next minute
    series.record(fallback=True, seconds=0.02)
    first = int(START) // MINUTE_S
    assert [m[:3] for m in series.published()] == [[first, 3, 1], [first + 1, 1, 1]]
    view = merged((clock, series), now=clock.now)["cita"]
    assert view.end_minute == first + 1
    assert view.requests[-2:] == [3, 1] and sum(view.requests) == 4
    assert view.fallback_ratio[-2:] == [pytest.approx(1 / 3), 1.0]
    assert view.fallback_ratio[0] is None  # a minute without requests has no ratio


def test_minutes_older_than_an_hour_expire_and_a_reused_slot_starts_from_zero():
    clock = Clock()
    series = MinuteSeries(clock)
    for _ in range(5):
        series.record(fallback=True, seconds=9.0)
    clock.now += (HOUR_MINUTES - 1) * MINUTE_S  # the 60th minute: the first is still in
    assert sum(merged((clock, series), now=clock.now)["cita"].requests) == 5
    clock.now += MINUTE_S  # the first minute leaves the hour
    assert series.published() == []
    assert "cita" not in merged((clock, series), now=clock.now)
    series.record(fallback=False, seconds=0.004)  # the same ring slot as the first minute
    (minute,) = series.published()
    assert minute[1:] == [1, 0, [1]]  # no count, fallback or latency left from an hour ago


def test_p95_is_read_from_the_histograms_of_two_workers_summed():
    # Worker a: 90 fast answers (<= 50 ms); worker b: 10 slow ones (1-1.5 s). Neither worker's
    # own p95 is the fleet's: a alone says <= 50 ms, b alone ~1.5 s.
    clock_a, clock_b = Clock(START + 5), Clock(START + 17)  # started apart, same minute
    a, b = MinuteSeries(clock_a), MinuteSeries(clock_b)
    for _ in range(90):
        a.record(fallback=False, seconds=0.04)
    for _ in range(10):
        b.record(fallback=True, seconds=1.2)
    view = merged((clock_a, a), (clock_b, b), now=START + 30)["cita"]
    assert view.requests[-1] == 100 and view.fallbacks[-1] == 10
    # rank 95 of 100 falls in the 1000-1500 ms bucket (counts 91..100): 1000 + 500 * 5/10
    assert view.p95_ms[-1] == pytest.approx(1250)
    assert view.hour_p95_ms == pytest.approx(1250)
    assert view.fallback_ratio[-1] == pytest.approx(0.1)


def test_workers_line_up_on_wall_clock_minutes():
    # b started 45 s after a; each records in minutes 0 and 1 of the wall clock.
    clock_a, clock_b = Clock(START), Clock(START + 45)
    a, b = MinuteSeries(clock_a), MinuteSeries(clock_b)
    a.record(fallback=False, seconds=0.1)
    b.record(fallback=False, seconds=0.1)
    clock_a.now, clock_b.now = START + 61, START + 100  # b: 55 s after its start
    a.record(fallback=False, seconds=0.1)
    b.record(fallback=False, seconds=0.1)
    b.record(fallback=False, seconds=0.1)
    view = merged((clock_a, a), (clock_b, b), now=START + 120)["cita"]
    assert view.requests[-3:] == [2, 3, 0]  # the reader is in minute 2 already


def test_histogram_quantile():
    assert histogram_quantile([], 0.95) is None
    assert histogram_quantile([0, 0], 0.95) is None
    assert histogram_quantile([10], 0.5) == pytest.approx(2.5)  # half-way into 0-5 ms
    overflow = [0] * len(LATENCY_BOUNDS_MS) + [3]
    assert histogram_quantile(overflow, 0.95) == LATENCY_BOUNDS_MS[-1]


def test_a_worker_with_other_latency_bounds_adds_traffic_but_no_latency():
    clock = Clock()
    series = MinuteSeries(clock)
    series.record(fallback=False, seconds=0.3)
    published = series_published({"cita": series})
    other = {**published, "latency_bounds_ms": [1, 2, 3]}
    view = series_merge([published, other], now=clock.now)["cita"]
    assert view.requests[-1] == 2
    assert sum(view.latency[-1]) == 1
