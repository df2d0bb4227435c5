"""Prepare the gateway's bench database: migrate, then one agent per stub path.

Run by bench/run.py as `python -m bench.gateway_setup STUB_URL DEAD_URL` with the gateway's
environment (DATABASE_URL of a throwaway SQLite file). BENCH_TENANTS=N adds N tenant rows
(id_empresa 1..N, the bench's own empresa among them) with a concurrency cap and a rate limit
that the load never reaches, so every request pays the tenant accounting. The agent `pooled` is
`instant` as a pool of POOL_REPLICAS endpoints on the same stub (issue 16's CPU comparison).
"""

import os
import sys

import django

POOL_REPLICAS = 4


def main(stub_url: str, dead_url: str) -> None:
    django.setup()
    from django.core.management import call_command

    from agents.models import Agent, AgentEndpoint, RoutingName, Tenant

    call_command("migrate", verbosity=0, interactive=False)
    Agent.objects.all().delete()
    common = {"timeout_s": 30.0, "connect_timeout_s": 5.0, "retries": 1}
    agents = {
        "instant": {"url": f"{stub_url}/instant", "max_concurrency": 1000, "max_connections": 256},
        "delay50ms": {
            "url": f"{stub_url}/delay50ms",
            "max_concurrency": 1000,
            "max_connections": 256,
        },
        "delay5s": {"url": f"{stub_url}/delay5s", "max_concurrency": 1000, "max_connections": 1000},
        "hold": {"url": f"{stub_url}/hold", "max_concurrency": 1, "timeout_s": 120.0},
        # bench/streams.py: 100 events, one every 100 ms (the asyncio stub only)
        "stream": {
            "url": f"{stub_url}/stream/100/100",
            "max_concurrency": 1000,
            "max_connections": 1000,
        },
        "dead": {
            "url": dead_url,
            "retries": 0,
            "breaker_fail_max": 1,
            "breaker_reset_s": 3600.0,
        },
    }
    for key, fields in agents.items():
        agent = Agent.objects.create(key=key, name=key, **{**common, **fields})
        RoutingName.objects.create(agent=agent, name=key)
    pooled = Agent.objects.create(
        key="pooled", name="pooled", **{**common, **agents["instant"], "url": ""}
    )
    RoutingName.objects.create(agent=pooled, name="pooled")
    for position in range(POOL_REPLICAS):
        AgentEndpoint.objects.create(
            agent=pooled, url=f"{stub_url}/instant?replica={position}", position=position
        )
    Tenant.objects.all().delete()
    Tenant.objects.bulk_create(
        Tenant(id_empresa=n, name=f"empresa {n}", max_concurrency=10_000,
               requests_per_minute=100_000_000)
        for n in range(1, int(os.environ.get("BENCH_TENANTS", "0")) + 1)
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
