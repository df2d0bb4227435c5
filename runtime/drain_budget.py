"""Is the shutdown drain long enough for the agents' timeouts?

On SIGTERM uvicorn lets requests in flight finish for `GATEWAY_DRAIN_S` seconds
(`--timeout-graceful-shutdown`, deploy/docker-entrypoint.sh), then cuts them. A request to an
agent can take its whole `timeout_s`, so the drain must cover the largest `timeout_s` plus a
margin (DRAIN_MARGIN_S) for the request that arrived just before SIGTERM and the answer's way
back. Reported by each serving process when its agents load or change (a `drain_too_short`
warning, from the registry) and by `manage.py check_agents`.
"""

import logging
from collections.abc import Iterable
from typing import Protocol

from gateway_project.conf import gateway_settings

DRAIN_MARGIN_S = 10.0

logger = logging.getLogger("gateway.registry")


class _TimedAgent(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...


def uncovered(agents: Iterable[_TimedAgent], drain_s: float) -> list[_TimedAgent]:
    """The agents (AgentSpec or Agent rows) whose `timeout_s` + 10 s exceeds `drain_s`, by key."""
    return sorted(
        (a for a in agents if float(a.timeout_s) + DRAIN_MARGIN_S > drain_s), key=lambda a: a.key
    )


def drain_problems(agents: Iterable[_TimedAgent], drain_s: float | None = None) -> list[str]:
    """One sentence per agent the drain (default: GATEWAY_DRAIN_S) does not cover."""
    drain = gateway_settings.drain_s if drain_s is None else drain_s
    return [
        f"agent {a.key}: timeout_s {float(a.timeout_s):g} s + {DRAIN_MARGIN_S:g} s is longer "
        f"than GATEWAY_DRAIN_S {drain:g} s, so a call in flight at shutdown can be cut off; set "
        f"GATEWAY_DRAIN_S to at least {float(a.timeout_s) + DRAIN_MARGIN_S:g} (the orchestrator's "
        "grace period longer still) or lower the agent's timeout_s"
        for a in uncovered(agents, drain)
    ]


class DrainWatch:
    """Logs one `drain_too_short` warning whenever the set of agents the drain does not cover
    changes to a non-empty one: at the first load (start-up) and when an edit raises a timeout
    past it, not again on every reload while nothing about it changed."""

    def __init__(self) -> None:
        self._reported: frozenset[tuple[str, float]] = frozenset()

    def check(self, agents: Iterable[_TimedAgent]) -> None:
        drain = gateway_settings.drain_s
        short = uncovered(agents, drain)
        seen = frozenset((a.key, float(a.timeout_s)) for a in short)
        if seen == self._reported:
            return
        self._reported = seen
        if short:
            logger.warning(
                "GATEWAY_DRAIN_S is shorter than some agents' timeout_s + 10 s: requests in "
                "flight to them at shutdown can be cut off",
                extra={
                    "event": "drain_too_short",
                    "drain_s": drain,
                    "agents": {a.key: float(a.timeout_s) for a in short},
                    "problems": drain_problems(short, drain),
                },
            )
