"""The benchmark: `python -m bench.run [--repeat 3] [--duration 10]` (see bench/README.md).

Starts the agent stub, the gateway (every feature on) and the reference proxies, runs every
scenario against each, and prints one table of medians over the repetitions, then the targets of
issue 7 as ratios measured in the same run. The server under test is pinned to core 0; wrk, the
stub and this runner to core 1.
"""

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import profile
from bench.inflight import run_inflight
from bench.scenarios import AUTH, CHAT_PATH, agent_body, chat_body, probe
from bench.stack import LOAD_CPU, Server, Stack
from bench.wrk import lua_script, run_wrk


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    cpu_ms: float
    ok: bool


@dataclass(frozen=True, slots=True)
class Load:
    """One wrk scenario: where, what, how many connections, and the answer expected."""

    scenario: str
    path: str
    body: bytes
    headers: dict[str, str]
    connections: int
    status: int = 200
    fallback: str | None = None


class Bench:
    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack, self.args = stack, args
        self.rows: dict[tuple[str, str], list[Row]] = defaultdict(list)
        self.checks: dict[str, list[float]] = defaultdict(list)
        self._scripts = 0

    def measure(self, server: Server, load: Load, *, cpu: int | None = LOAD_CPU) -> Row:
        url = server.base + load.path
        status, fallback, _ = probe(url, load.body, load.headers)
        script = lua_script(self._script_path(), load.body, load.headers)
        if self.args.warmup > 0:
            run_wrk(url, script, connections=load.connections, duration_s=self.args.warmup, cpu=cpu)
        peak = _PeakRss(server)
        cpu_before = server.cpu_s()
        with peak:
            result = run_wrk(
                url, script, connections=load.connections, duration_s=self.args.duration, cpu=cpu
            )
        cpu_ms = (server.cpu_s() - cpu_before) * 1000 / max(result.requests, 1)
        expected_non_2xx = 0 if load.status < 300 else result.requests
        ok = (
            status == load.status
            and fallback == load.fallback
            and result.socket_errors == 0
            and result.non_2xx == expected_non_2xx
        )
        row = Row(
            load.scenario,
            server.name,
            result.rps,
            result.p50_ms,
            result.p99_ms,
            peak.value,
            cpu_ms,
            ok,
        )
        self.rows[(row.scenario, row.target)].append(row)
        verdict = (
            "ok"
            if ok
            else (
                f"WRONG: probe {status} fallback={fallback}, {result.non_2xx} non-2xx, "
                f"{result.socket_errors} socket errors"
            )
        )
        print(
            f"  {row.scenario:<34} {row.target:<22} {row.rps:>9.0f} req/s  "
            f"p99 {row.p99_ms:7.2f} ms  {verdict}",
            flush=True,
        )
        return row

    def _script_path(self) -> Path:
        self._scripts += 1
        return self.stack.workdir / f"load{self._scripts}.lua"


class _PeakRss:
    """Samples the server's RSS every 100 ms while a load runs."""

    def __init__(self, server: Server) -> None:
        self.server, self.value = server, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, self.server.rss_mb())
            self._stop.wait(0.1)


def compare(bench: Bench, stub: Server, targets: list[Server], round_: int) -> None:
    """The agent at once (1, 16 and 64 concurrent) and in 50 ms (64 concurrent): direct, then
    the gateway and the refs, in reverse order every other round: at one connection the first
    target after the stub read a few per cent dearer than in the same round's A B B A quartet."""
    if round_ % 2:
        targets = targets[::-1]
    instant, delayed = "agent at once, 16 conc", "agent in 50 ms, 64 conc"
    instant_1, instant_64 = "agent at once, 1 conc", "agent at once, 64 conc"
    for scenario, path, connections in (
        (instant_1, "instant", 1),
        (instant, "instant", 16),
        (instant_64, "instant", 64),
        (delayed, "delay50ms", 64),
    ):
        bench.measure(
            stub,
            Load(
                scenario,
                f"/{path}",
                agent_body(),
                {"Content-Type": "application/json"},
                connections,
            ),
        )
        for server in targets:
            bench.measure(server, Load(scenario, CHAT_PATH, chat_body(path), AUTH, connections))
    for name, scenario, reference in (
        ("50 ms @64: gateway / straight to agent", delayed, stub.name),
        ("instant @16: gateway / naive Django+httpx", instant, "naive Django+httpx"),
        ("instant @16: gateway / FastAPI+httpx", instant, "FastAPI+httpx"),
        ("50 ms @64, not a target: gateway / FastAPI+aiohttp", delayed, "FastAPI+aiohttp"),
        ("instant @16, not a target: gateway / FastAPI+aiohttp", instant, "FastAPI+aiohttp"),
    ):
        _ratio(bench, name, scenario, reference)
    for scenario in (instant_1, instant, instant_64):
        _cpu_ratio(bench, scenario, "FastAPI+aiohttp")
    bench.checks["50 ms @64: gateway p99 (ms)"].append(bench.rows[(delayed, "gateway")][-1].p99_ms)


# The gateway three ways, otherwise identical: (name, its OTEL_* variables; None: tracing off).
TRACING: tuple[tuple[str, dict[str, str] | None], ...] = (
    ("gateway, tracing off", None),
    ("gateway, tracing 100 %", {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}),
    (
        "gateway, tracing 1 %",
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    ),
)
TRACED = "agent at once, 16 conc (tracing)"


def start_traced(stack: Stack, sink: Server) -> list[Server]:
    """The TRACING gateways, exporting to `sink` (each under its own service name)."""
    servers = []
    for name, variables in TRACING:
        env = stack.gateway_env()
        if variables is not None:
            env |= {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{sink.base}/v1/traces",
                "OTEL_SERVICE_NAME": name,
                **variables,
            }
        servers.append(stack.start_python(name, "gateway_project.asgi:application", env))
    return servers


def tracing(bench: Bench, traced: list[Server], round_: int) -> None:
    """The agent at once @16 on each TRACING gateway, in an order that rotates each round; the
    traced ones' req/s and CPU per call over the untraced one's, inside the round."""
    load = Load(TRACED, CHAT_PATH, chat_body("instant"), AUTH, 16)
    shift = round_ % len(traced)
    rows = {}
    for server in traced[shift:] + traced[:shift]:
        rows[server.name] = bench.measure(server, load)
        _quiet(server)  # its batch processor's thread exports the last spans on core 0 too
    off = rows[TRACING[0][0]]
    for name, row in rows.items():
        if name != off.target:
            share = name.removeprefix("gateway, tracing ")
            bench.checks[f"tracing {share} / off: req/s (at once @16)"].append(row.rps / off.rps)
            bench.checks[f"tracing {share} / off: CPU per call"].append(row.cpu_ms / off.cpu_ms)


def _quiet(server: Server) -> None:
    """Until the server spends no more CPU (under 10 ms in 0.5 s), at most 10 s."""
    deadline = time.monotonic() + 10
    last = server.cpu_s()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.cpu_s()
        if now - last < 0.01:
            return
        last = now


def tracing_exported(bench: Bench, stack: Stack, traced: list[Server], sink: Server) -> None:
    """Spans the sink got per request answered, once each traced gateway has stopped (which
    exports what its batch processor still held): about 2 at 100 % (server and client span),
    0.02 at 1 %."""
    for server in traced[1:]:
        requests = _requests_answered(server)
        stack.stop(server)
        with urllib.request.urlopen(f"{sink.base}/count", timeout=5) as response:
            spans = orjson.loads(response.read()).get(server.name, 0)
        share = server.name.removeprefix("gateway, tracing ")
        bench.checks[f"tracing {share}: spans exported per request"].append(spans / requests)


def _requests_answered(server: Server) -> float:
    with urllib.request.urlopen(server.base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_requests_total{")
    )


def _ratio(bench: Bench, name: str, scenario: str, reference: str) -> None:
    """The gateway's rate over `reference`'s in this round, when both were measured."""
    rows = bench.rows
    if (scenario, "gateway") in rows and (scenario, reference) in rows:
        gateway, other = rows[(scenario, "gateway")][-1], rows[(scenario, reference)][-1]
        bench.checks[name].append(gateway.rps / other.rps)


def _cpu_ratio(bench: Bench, scenario: str, reference: str) -> None:
    """The gateway's CPU per proxied call over `reference`'s in this round (≤ 1: cheaper)."""
    rows = bench.rows
    if (scenario, "gateway") in rows and (scenario, reference) in rows:
        gateway, other = rows[(scenario, "gateway")][-1], rows[(scenario, reference)][-1]
        name = f"CPU per call, {scenario.removeprefix('agent ')}: gateway / {reference}"
        bench.checks[name].append(gateway.cpu_ms / other.cpu_ms)


TENANTS_GATEWAY = "gateway, 1,000 tenants"


def tenants(bench: Bench, gateway: Server, with_tenants: Server, round_: int) -> None:
    """Issue 18: the same proxied call on a gateway with 1,000 tenant rows (the bench's empresa
    among them, with a cap and a rate limit the load never reaches) and on one without, back to
    back in one round, in alternating order (a drift of the machine favours neither)."""
    pair = (gateway, with_tenants) if round_ % 2 == 0 else (with_tenants, gateway)
    for connections in (1, 16):
        scenario = f"tenants: agent at once, {connections} conc"
        for server in pair:
            bench.measure(
                server, Load(scenario, CHAT_PATH, chat_body("instant"), AUTH, connections)
            )
        rows = bench.rows
        plain, loaded = rows[(scenario, gateway.name)][-1], rows[(scenario, with_tenants.name)][-1]
        bench.checks[f"tenants @{connections}: CPU per call, 1,000 tenants / none"].append(
            loaded.cpu_ms / plain.cpu_ms
        )
        bench.checks[f"tenants @{connections}: req/s, 1,000 tenants / none"].append(
            loaded.rps / plain.rps
        )


POOL_LOADS = (("one URL", "instant"), ("4 replicas", "pooled"))


def pools(bench: Bench, gateway: Server, round_: int) -> None:
    """Issue 16: the same proxied call to an agent with one URL and to one with 4 replicas on the
    same stub (bench/gateway_setup.py), back to back on one gateway, in alternating order."""
    loads = POOL_LOADS if round_ % 2 == 0 else POOL_LOADS[::-1]
    for label, agent in loads:
        scenario = f"pools: agent at once, 16 conc, {label}"
        bench.measure(gateway, Load(scenario, CHAT_PATH, chat_body(agent), AUTH, 16))
    single, pooled = (
        bench.rows[(f"pools: agent at once, 16 conc, {label}", gateway.name)][-1]
        for label, _ in POOL_LOADS
    )
    bench.checks["pools @16: CPU per call, 4 replicas / one URL"].append(
        pooled.cpu_ms / single.cpu_ms
    )


CPU_REFERENCE = "FastAPI+aiohttp"


def cpu_abba(bench: Bench, gateway: Server, reference: Server) -> None:
    """Issue 15: CPU per proxied call (the agent at once), the gateway against the FastAPI +
    aiohttp reference at 1, 16 and 64 connections, measured gateway, reference, reference,
    gateway: a drift of the shared machine during the quartet weighs on both sides alike."""
    for connections in (1, 16, 64):
        scenario = f"A B B A: agent at once, {connections} conc"
        load = Load(scenario, CHAT_PATH, chat_body("instant"), AUTH, connections)
        for server in (gateway, reference, reference, gateway):
            bench.measure(server, load)
        ours, theirs = (bench.rows[(scenario, server.name)][-2:] for server in (gateway, reference))
        bench.checks[f"CPU per call @{connections}, A B B A: gateway / {CPU_REFERENCE}"].append(
            sum(row.cpu_ms for row in ours) / sum(row.cpu_ms for row in theirs)
        )


def no_agent(bench: Bench, gateway: Server) -> None:
    """Answers that never reach an agent, at 16 concurrent."""
    hold = threading.Thread(target=_hold, args=(gateway.base + CHAT_PATH,), daemon=True)
    probe(gateway.base + CHAT_PATH, chat_body("dead"), AUTH)  # opens the dead agent's breaker
    hold.start()  # takes the hold agent's one slot for 120 s
    _wait_inflight(gateway)
    loads = [
        Load(
            "400 validation, 16 conc", CHAT_PATH, chat_body("instant", message=" "), AUTH, 16, 400
        ),
        Load(
            "401 bad key, 16 conc",
            CHAT_PATH,
            chat_body("instant"),
            {**AUTH, "X-API-Key": "wrong"},
            16,
            401,
        ),
        Load("breaker open, 16 conc", CHAT_PATH, chat_body("dead"), AUTH, 16, 200, "circuit_open"),
        Load("backpressure 503, 16 conc", CHAT_PATH, chat_body("hold"), AUTH, 16, 503),
    ]
    worst = max(bench.measure(gateway, load).p99_ms for load in loads)
    bench.checks["no-agent paths @16: worst p99 (ms)"].append(worst)


def _hold(url: str) -> None:
    """One call that holds the hold agent's only slot until it answers (120 s, past every load
    here) or the gateway stops at the end of the run."""
    with contextlib.suppress(OSError):
        probe(url, chat_body("hold"), AUTH, 180.0)


def _wait_inflight(gateway: Server) -> None:
    """Until the gateway's metrics show the hold call in flight (a probe could take the slot)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(gateway.base + "/metrics", timeout=5) as response:
            if b'gateway_inflight_requests{agent="hold"} 1.0' in response.read():
                return
        time.sleep(0.05)
    raise TimeoutError("the hold call never filled the hold agent's slot")


def inflight(bench: Bench, stack: Stack, count: int) -> None:
    """`count` calls at once to the 5 s agent on a fresh gateway: all answered? memory?"""
    gateway = stack.start_python(
        "gateway (fresh)", "gateway_project.asgi:application", stack.gateway_env()
    )
    try:
        for _ in range(20):  # warm up every code path of a call before taking the idle size
            probe(gateway.base + CHAT_PATH, chat_body("instant"), AUTH)
        idle = gateway.rss_mb()
        peak = _PeakRss(gateway)
        with peak:
            result = run_inflight(
                "127.0.0.1",
                gateway.port,
                CHAT_PATH,
                chat_body("delay5s"),
                AUTH,
                count=count,
                timeout_s=30,
            )
        pooled = _settled_rss(gateway)
        # "after": once the agent pool's idle connections have expired (--keepalive-wait).
        time.sleep(bench.args.keepalive_wait)
        after = _settled_rss(gateway)
    finally:
        stack.stop(gateway)
    print(
        f"  {count} in flight to a 5 s agent: {result.outcomes} in {result.seconds:.1f}s; "
        f"RSS idle {idle:.1f} MB, peak {peak.value:.1f} MB, with the pool still warm "
        f"{pooled:.1f} MB, after {after:.1f} MB",
        flush=True,
    )
    bench.checks[f"{count} in flight @5 s: answered 200"].append(result.outcomes.get("200", 0))
    bench.checks[f"{count} in flight @5 s: peak RSS (MB)"].append(peak.value)
    bench.checks[f"{count} in flight @5 s: RSS after - idle (MB)"].append(after - idle)


def _settled_rss(server: Server) -> float:
    """RSS once it stops falling (closed connections are released over a few seconds)."""
    last = server.rss_mb()
    for _ in range(30):
        time.sleep(0.5)
        now = server.rss_mb()
        if abs(now - last) < 0.2:
            return now
        last = now
    return last


def workers(bench: Bench, stack: Stack) -> None:
    """One worker vs two (one per core), agent at once, 64 concurrent; wrk floats.

    Both with PROMETHEUS_MULTIPROC_DIR, as a multi-worker deployment must run to get whole
    metrics, so the ratio measures scaling alone.
    """
    load = Load("agent at once, 64 conc", CHAT_PATH, chat_body("instant"), AUTH, 64)
    prom_dir = stack.workdir / "prometheus"
    prom_dir.mkdir(exist_ok=True)
    env = {**stack.gateway_env(), "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}
    rps = []
    for count in (1, 2):
        server = stack.start_python(
            f"gateway {count} worker(s), multiproc",
            "gateway_project.asgi:application",
            env,
            workers=count,
            cpus=None,
        )
        try:
            if count == 1:
                os.sched_setaffinity(server.proc.pid, {0})
            rps.append(bench.measure(server, load, cpu=LOAD_CPU if count == 1 else None).rps)
        finally:
            stack.stop(server)
    bench.checks["2 workers / 1 worker (instant @64)"].append(rps[1] / rps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument(
        "--keepalive-wait",
        type=float,
        default=33.0,
        help="seconds to wait after the in-flight burst before the 'after' RSS: the agents' "
        "pools keep idle connections for 30 s (runtime/client.py KEEPALIVE_S)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=["compare", "noagent", "inflight", "workers"],
        choices=["compare", "noagent", "inflight", "workers", "tenants", "tracing", "pools", "cpu"],
        help="what to measure; 'tenants', 'tracing', 'pools' and 'cpu' are not in the default "
        "run: the gateway with 1,000 tenant rows against none; tracing off, on for every "
        "request and on for 1 %%, exporting to an OTLP sink; an agent of 4 replicas against one "
        "URL; CPU per call against FastAPI+aiohttp in A B B A order (with --refs "
        "fastapi-aiohttp)",
    )
    parser.add_argument(
        "--refs",
        nargs="*",
        default=["naive", "fastapi", "fastapi-aiohttp"],
        choices=["naive", "naive-stock", "fastapi", "fastapi-aiohttp"],
    )
    parser.add_argument(
        "--half-core",
        action="store_true",
        help="share the servers' core with a busy loop, as on cores half as fast; for "
        "--only compare noagent (tail latencies grow more than on a slow core: the scheduler "
        "hands the core over in slices of a few ms)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the gateway with py-spy during the two agent scenarios",
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CPU})
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    print(f"work dir: {workdir}", flush=True)
    with Stack(workdir) as stack:
        stub = stack.start_stub()
        stack.setup_gateway_db(stub)
        gateway = stack.start_python(
            "gateway", "gateway_project.asgi:application", stack.gateway_env()
        )
        print(f"gateway allocator: {gateway.allocator()} (deploy/with-allocator.sh)", flush=True)
        with_tenants = None
        if "tenants" in args.only:
            env = stack.gateway_env("gateway-tenants")
            stack.setup_gateway_db(stub, {**env, "BENCH_TENANTS": "1000"})
            with_tenants = stack.start_python(TENANTS_GATEWAY, "gateway_project.asgi:application",
                                              env)  # fmt: skip
        routes = {"BENCH_ROUTES": f"instant={stub.base}/instant,delay50ms={stub.base}/delay50ms"}
        naive_settings = {"DJANGO_SETTINGS_MODULE": "bench.naive.settings"}
        refs = {
            # Its own settings, also when the caller's environment names the gateway's (pytest).
            "naive": ("naive Django+httpx", "bench.naive.asgi:application", naive_settings),
            "naive-stock": (
                "Django+stock middleware",
                "bench.naive.asgi:application",
                {**naive_settings, "NAIVE_STOCK_MIDDLEWARE": "1"},
            ),
            "fastapi": ("FastAPI+httpx", "bench.fastapi_ref.app:app", {}),
            "fastapi-aiohttp": ("FastAPI+aiohttp", "bench.fastapi_ref.aiohttp_app:app", {}),
        }
        others = [
            stack.start_python(name, app, {**routes, **env}, ready_path="/api/agent/chat")
            for key, (name, app, env) in refs.items()
            if key in args.refs
        ]
        bench = Bench(stack, args)
        if args.half_core:
            stack.start_busy_loop()
        if args.profile:
            profile.record(bench, gateway, stub)
        traced: list[Server] = []
        if "tracing" in args.only:
            sink = stack.start_otlp_sink()
            traced = start_traced(stack, sink)
        for round_ in range(args.repeat):
            print(f"round {round_ + 1}/{args.repeat}", flush=True)
            if "compare" in args.only:
                compare(bench, stub, [gateway, *others], round_)
            if with_tenants is not None:
                tenants(bench, gateway, with_tenants, round_)
            if "pools" in args.only:
                pools(bench, gateway, round_)
            if "cpu" in args.only:
                reference = next(s for s in others if s.name == CPU_REFERENCE)
                cpu_abba(bench, gateway, reference)
            if "noagent" in args.only:
                no_agent(bench, gateway)
            if "workers" in args.only:
                workers(bench, stack)
            if "inflight" in args.only:
                inflight(bench, stack, args.inflight)
            if traced:
                tracing(bench, traced, round_)
        if traced:
            tracing_exported(bench, stack, traced, sink)
    print_table(bench, args)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(bench: Bench, args: argparse.Namespace) -> None:
    print(
        f"\nMedians of {args.repeat} round(s), {args.duration:g} s per load, one wrk thread; "
        f"server pinned to core 0, wrk + stub on core 1"
        f"{'; core 0 shared with a busy loop (--half-core)' if args.half_core else ''}.\n"
    )
    print("| scenario | target | req/s | p50 ms | p99 ms | peak RSS MB | CPU ms/req | answers |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for (scenario, target), rows in bench.rows.items():
        print(
            f"| {scenario} | {target} | {_median([r.rps for r in rows]):,.0f} | "
            f"{_median([r.p50_ms for r in rows]):.2f} | {_median([r.p99_ms for r in rows]):.2f} | "
            f"{_median([r.rss_mb for r in rows]):.0f} | {_median([r.cpu_ms for r in rows]):.2f} | "
            f"{'ok' if all(r.ok for r in rows) else 'WRONG'} |"
        )
    print("\n| ratio or target, measured in the same run | median | rounds |")
    print("|---|---:|---|")
    for name, values in bench.checks.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {_median(values):.2f} | {rounds} |")


if __name__ == "__main__":
    main()
