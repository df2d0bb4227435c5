"""The JSON lines' timestamp, built from a cached second, reads exactly as datetime's
isoformat to the millisecond, at second boundaries and where the fraction rounds up."""

import random
from datetime import UTC, datetime

from observability.logs import _timestamp


def expected(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


def test_random_instants_read_as_isoformat() -> None:
    rng = random.Random(16)
    for _ in range(50_000):
        created = rng.uniform(1.7e9, 1.8e9)
        assert _timestamp(created) == expected(created)


def test_edges_of_a_second() -> None:
    for created in (1.7e9, 1.7e9 + 0.9994, 1.7e9 + 0.9999994, 1.7e9 + 0.9999996, 1.7e9 + 1e-7):
        assert _timestamp(created) == expected(created)
    # The cached second moves on: an earlier instant after a later one still reads right.
    assert _timestamp(1.8e9) == expected(1.8e9)
    assert _timestamp(1.7e9 + 0.5) == expected(1.7e9 + 0.5)
