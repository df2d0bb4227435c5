from fleet.activity import BUCKET_S, WINDOW_S, ActivityWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_requests_and_fallbacks_over_the_last_five_minutes() -> None:
    clock = Clock()
    window = ActivityWindow(clock)
    for _ in range(3):
        window.record(fallback=False)
    window.record(fallback=True)
    assert window.totals() == (4, 1)
    clock.now += WINDOW_S - BUCKET_S
    window.record(fallback=True)
    assert window.totals() == (5, 2)
    clock.now += BUCKET_S  # the first bucket leaves the window
    assert window.totals() == (1, 1)
    clock.now += WINDOW_S
    assert window.totals() == (0, 0)


def test_a_reused_slot_starts_from_zero() -> None:
    clock = Clock()
    window = ActivityWindow(clock)
    window.record(fallback=True)
    clock.now += WINDOW_S  # same ring slot, a new period
    window.record(fallback=False)
    assert window.totals() == (1, 0)
