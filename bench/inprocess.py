"""CPU per chat request inside the gateway: the ASGI application driven directly, no HTTP server.

    python -m bench.inprocess [instant|delay50ms|400|breaker] [--requests N] [--rounds R]
                              [--concurrency C] [--tracing off|all|1%] [--tenants-ab]
                              [--app gateway|reference]
                              [--pool-ab] [--pool]

The gateway runs in this process (one core), the agent stub in another (the other core); each
round sends N chat requests, C at a time (16 by default), through
`gateway_project.asgi.application` with an in-memory receive/send, and reports the process's CPU time per request. Without uvicorn and wrk
in the measurement it is steadier than `bench.run` (a few % between rounds), so it is the tool for
an A/B of a change to the gateway's own code: run it on both builds, alternated, on one machine.
`--tracing all` or `1%` turns tracing on (OTLP to a sink process on the other core, sampling
every request or 1 % of them): the CPU counted includes the batch processor's export thread.
`--tenants-ab` loads 1,000 tenant rows (the bench's empresa among them, with a cap and a rate
limit the load never reaches) and takes them out of the registry and back between rounds, in
A B B A order, in this one process: the cost of the tenant accounting with the machine's drift
paired away. `--pool-ab` pairs the same way the agent's spec: its one URL (A), or a pool of 4
endpoints of weight 1 on the same stub, least in flight (B), each with its own connection pool:
the cost of balancing, in-flight counts and outcome records per call; `--pool` keeps the pool
for every round (for bench.instructions: `--b-arg=--pool`). `--app reference` drives
the FastAPI + aiohttp reference proxy (bench/fastapi_ref/aiohttp_app.py) the same way, for
`instant` and `delay50ms`: the proxy with no features that `bench.run` compares the gateway with.
"""

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.scenarios import CHAT_PATH, chat_body
from bench.stack import API_KEY, LOAD_CPU, ROOT, SERVER_CPU, Stack

CONCURRENCY = 16
# scenario -> (the agent it routes to, the message, the status every answer must have)
SCENARIOS = {
    "instant": ("instant", None, 200),
    "delay50ms": ("delay50ms", None, 200),
    "400": ("instant", " ", 400),
    "breaker": ("dead", None, 200),  # the first call fails and opens it; the rest are fallbacks
}
# --tracing -> the sampler's OTEL_* variables (None: tracing off)
TRACING: dict[str, dict[str, str] | None] = {
    "off": None,
    "all": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "1%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
}


def _scope(body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"x-api-key", API_KEY.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT_PATH,
        "raw_path": CHAT_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: Any, body: bytes) -> int:
    """One request; the caller stays connected until the answer is sent, then hangs up."""
    answered = asyncio.Event()
    statuses: list[int] = []
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(_scope(body), receive, send)
    answered.set()
    return statuses[0]


def _tenants_switch() -> Any:
    """A function that puts the loaded tenants in the registry (True) or takes them out."""
    from runtime import registry

    snapshot = registry.snapshot
    specs = [runtime.spec for runtime in snapshot.agents.values()]
    tenants = [tenant.spec for tenant in snapshot.tenants.values()]
    assert len(tenants) >= 1000, "run with BENCH_TENANTS=1000 (set by --tenants-ab)"

    def switch(on: bool) -> None:
        registry.apply(snapshot.version, specs, tenants if on else ())
        assert bool(registry.snapshot.tenants) == on

    return switch


POOL_REPLICAS = 4


def _pool_switch() -> Any:
    """A function that makes the bench's agent a pool of POOL_REPLICAS endpoints (True) or gives
    it back its one URL."""

    from runtime import EndpointSpec, registry

    snapshot = registry.snapshot
    specs = {key: runtime.spec for key, runtime in snapshot.agents.items()}
    single = specs["instant"]
    pool = tuple(EndpointSpec(f"{single.url}?replica={i}") for i in range(POOL_REPLICAS))
    pooled = replace(single, endpoints=pool)

    def switch(on: bool) -> None:
        specs["instant"] = pooled if on else single
        registry.apply(snapshot.version, specs.values())
        assert len(registry.snapshot.agents["instant"].replicas) == (POOL_REPLICAS if on else 1)

    return switch


async def _measure(
    application: Any,
    scenario: str,
    requests: int,
    rounds: int,
    concurrency: int,
    tenants_ab: bool = False,
    pool_ab: bool = False,
    pool: bool = False,
) -> list[float]:
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    lifespan = asyncio.create_task(application({"type": "lifespan"}, startup.get, lifespan_send))
    await startup.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), timeout=30)
    modalidad, message, status = SCENARIOS[scenario]
    body = chat_body(modalidad, **({"message": message} if message else {}))

    async def caller(count: int) -> None:
        for _ in range(count):
            answered = await _one(application, body)
            if answered != status:
                raise RuntimeError(f"{scenario}: answered {answered}, expected {status}")

    async def burst(total: int) -> None:
        await asyncio.gather(*(caller(total // concurrency) for _ in range(concurrency)))

    await burst(concurrency * 30)  # warm-up: connections, caches, the breaker opened
    switch = _tenants_switch() if tenants_ab else _pool_switch() if pool_ab else None
    if pool and switch is None:
        _pool_switch()(True)
    if pool_ab or pool:  # warm the pool's connections too
        if switch is not None:
            switch(True)
        await burst(concurrency * 30)
    per_request_us = []
    for round_ in range(rounds):
        if switch is not None:
            switch(round_ % 4 in (0, 3))  # with, without, without, with, ...
        cpu_before = time.process_time()
        await burst(requests)
        per_request_us.append((time.process_time() - cpu_before) / requests * 1e6)
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    return per_request_us


def _ab_summary(rounds: list[float], a: str, b: str) -> str:
    """Rounds in A B B A order: each side's CPU per request, and A / B by the sums and by the
    median of the quartets' ratios."""
    side_a = [r for i, r in enumerate(rounds) if i % 4 in (0, 3)]
    side_b = [r for i, r in enumerate(rounds) if i % 4 in (1, 2)]
    return (
        f"CPU µs per request {a} {' '.join(f'{r:.1f}' for r in side_a)}; {b} "
        f"{' '.join(f'{r:.1f}' for r in side_b)}; {a} / {b} (sums): "
        f"{sum(side_a) / sum(side_b):.3f}; median of the quartets' ratios: "
        f"{statistics.median(_quartet_ratios(rounds)):.3f}"
    )


def _quartet_ratios(rounds: list[float]) -> list[float]:
    """(A + A) / (B + B) of each whole A B B A quartet: the machine's drift paired away."""
    return [
        (rounds[i] + rounds[i + 3]) / (rounds[i + 1] + rounds[i + 2])
        for i in range(0, len(rounds) - 3, 4)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", nargs="?", default="instant", choices=sorted(SCENARIOS))
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--tracing", choices=list(TRACING), default="off")
    parser.add_argument("--tenants-ab", action="store_true", help="see above; rounds: 4 or more")
    parser.add_argument("--app", choices=["gateway", "reference"], default="gateway")
    parser.add_argument("--pool-ab", action="store_true", help="see above; rounds: 4 or more")
    parser.add_argument("--pool", action="store_true", help="see above")
    args = parser.parse_args()
    if args.tenants_ab:
        os.environ["BENCH_TENANTS"] = "1000"
    workdir = Path(tempfile.mkdtemp(prefix="gateway-inprocess-"))
    with Stack(workdir) as stack:
        stub = stack.start_stub()
        for pid in (stub.proc.pid, *stub.worker_pids()):
            os.sched_setaffinity(pid, {LOAD_CPU})
        stack.setup_gateway_db(stub)
        os.environ.update(stack.gateway_env())
        sampler = TRACING[args.tracing]
        if sampler is not None:
            sink = stack.start_otlp_sink()
            os.environ.update(
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{sink.base}/v1/traces",
                **sampler,
            )
        os.sched_setaffinity(0, {int(SERVER_CPU)})
        import uvloop

        application: Any
        if args.app == "reference":
            os.environ["BENCH_ROUTES"] = ",".join(
                f"{name}={stub.base}/{name}" for name in ("instant", "delay50ms")
            )
            from bench.fastapi_ref.aiohttp_app import app as application
        else:
            from gateway_project.asgi import application  # sets Django up, logging included

        for handler in logging.getLogger().handlers:  # access lines to a file, not this terminal
            if isinstance(handler, logging.StreamHandler):
                handler.setStream((workdir / "gateway.log").open("w"))
        rounds = uvloop.run(
            _measure(
                application, args.scenario, args.requests, args.rounds, args.concurrency,
                args.tenants_ab, args.pool_ab, args.pool,
            )
        )  # fmt: skip
    build = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    traced = "" if args.tracing == "off" else f", tracing {args.tracing}"
    if args.pool_ab or args.tenants_ab:
        what, a, b = (
            (f"{POOL_REPLICAS} replicas vs one URL", "pooled", "one URL")
            if args.pool_ab
            else ("1,000 tenants in and out", "with", "without")
        )
        print(f"{args.scenario} @ {build or '?'}, {what}, A B B A: {_ab_summary(rounds, a, b)}")
        return
    app = "" if args.app == "gateway" else ", the FastAPI + aiohttp reference"
    print(
        f"{args.scenario} @ {build or '?'}{app}, {args.concurrency} at a time{traced}: "
        f"CPU µs per request, "
        f"{args.rounds} rounds of "
        f"{args.requests}: {' '.join(f'{r:.1f}' for r in rounds)}; min {min(rounds):.1f}"
    )


if __name__ == "__main__":
    main()
