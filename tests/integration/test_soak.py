"""The moving-world soak (issue 14): 45 s of concurrent chat traffic through a 2-worker gateway
on PostgreSQL and Redis while agents, routing names and API keys are edited, disabled and
deleted, a breaker is reset, Redis and PostgreSQL restart and a worker is SIGKILLed; then every
invariant of the contract's section 5 is checked (the harness and what it checks: tests/soak.py;
`python -m tests.soak` runs it alone for 60 s)."""

from __future__ import annotations

import pytest

from tests.soak import SoakConfig, run_soak

pytestmark = pytest.mark.integration


@pytest.mark.timeout(170)
def test_a_moving_world_gets_only_contract_answers_and_consistent_metrics() -> None:
    result = run_soak(SoakConfig(duration=45.0, loops=24))
    report = result.report()
    print(report)  # the distribution, also when every invariant holds (pytest -s / -rP)
    if result.violations:
        pytest.fail(
            f"{report}\ngateway log (last lines):\n{result.gateway_log_tail}", pytrace=False
        )
