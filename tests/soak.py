"""A moving-world soak: steady chat traffic while an operator changes everything under it.

Real servers on 127.0.0.1 only: a throwaway PostgreSQL cluster and Redis server
(tests/servers.py), FaultAgent agent servers (tests/fault_agent.py) and the gateway as
`python -m edge.serve --workers 2` with PROMETHEUS_MULTIPROC_DIR and REDIS_URL.
Concurrent loops (httpx.AsyncClient, one connection each) send chat requests to random routing
names with one of three admin API keys while a schedule, through the ORM in a subprocess (a
`manage.py shell` that runs the operator's changes one at a time), edits an agent's URL (to
another agent server, then to a refusing port), edits a timeout, disables and re-enables an
agent, resets a breaker, deletes and re-creates an agent, revokes one key and deletes another,
restarts Redis and PostgreSQL, SIGKILLs one uvicorn worker, and finally deletes an agent for good.

At the end it checks the contract's invariants (docs/CONTRACT.md sections 1 and 5): every
answer in the contract's shape, no 500, a 400/401 only where the schedule removed the routing
name or key the request used, no dropped connection except the requests in flight on the
killed worker, every answer counted once in gateway_requests_total, live gauges at 0 / gone
for the deleted agent / not counting the dead worker, and the surviving worker's open file
descriptors back to their baseline.

How the judging draws its lines (times are the harness's monotonic clock):
- a change is "launched" when its ORM snippet is sent to the operator and "done" when the
  operator has committed it; it may reach a request any time after launch, and must have
  reached every worker PROPAGATION_S after done (the README's bound, 2 s polling, + margin).
- a 401 is allowed for a request with the revoked or deleted key that ended after that change
  was launched; a `400 Modalidad no reconocida: <as sent>` for a request to the deleted agent's
  routing name that overlaps [deleted launched, re-created done + PROPAGATION_S] (for the agent
  deleted for good, until the end).
- "lost to the kill": a transport error of a request that started before the killed worker was
  dead (zombie with no thread left, so its sockets are closed) and failed between the SIGKILL
  and LOST_WINDOW_S after the death; at most one per loop. Any other transport error fails.
- counting: gateway_requests_total (summed over every label, final scrape minus a scrape after
  the warm-up) minus the answers received must lie in [-(answers received between the SIGKILL
  and the death: the dying worker may have sent one before counting it), +lost to the kill].
- the final scrape waits until 11 s after the kill and 6 s after the last deletion (the
  contract's 10 s and 5 s, + margin), and 3 s after traffic stops.

    .venv/bin/python -m tests.soak [--duration 60] [--loops 24] [--seed N]

prints the schedule as it ran, the distribution of answers and every broken invariant (exit
status 1 when any). tests/integration/test_soak.py runs the same harness for 45 s.
Everything is bounded in time and count, and stops only the processes it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, GatewayProcess, LiveDatabase, chat_body, start_gateway
from tests.fault_agent import FaultAgent, refused_url
from tests.servers import PostgresServer, RedisServer

CHAT = "/api/agent/chat"
WORKERS = 2
POLL_INTERVAL_S = 0.3
# The contract's bounds (README "Scale-out", CONTRACT section 5), with a margin.
PROPAGATION_S = 2.0 + 0.5  # a change reaches every worker (1 s with Redis, 2 s polling)
GAUGE_GONE_S = 5.0 + 1.0  # a deleted agent's live gauges leave /metrics
DEAD_WORKER_GONE_S = 10.0 + 1.0  # a SIGKILLed worker stops counting in the live gauges
LOST_WINDOW_S = 2.5  # a request lost to the kill fails within this after the worker died
FD_TOLERANCE = 10
CLIENT_TIMEOUT_S = 20.0  # longer than any agent timeout: a client timeout is a failure
MAX_REQUESTS_PER_LOOP = 20_000
OPERATOR_TIMEOUT_S = 30.0

NO_AUTH = {"detail": "No autorizado"}

# key -> (routing names, url path on the first agent server, Agent fields)
AGENTS: dict[str, tuple[list[str], str, dict[str, Any]]] = {
    "alpha": (["alpha", "alfa"], "/ok", {"retries": 1, "max_concurrency": 20}),
    "beta": (["beta"], "/slow/0.8", {"retries": 0, "max_concurrency": 3, "breaker_reset_s": 5}),
    "gamma": (["gamma"], "/ok", {"retries": 0, "max_concurrency": 15}),
    "delta": (["delta"], "/ok", {"retries": 1, "max_concurrency": 10}),
}
KEEPALIVE_PER_AGENT = 4  # AGENT_KEEPALIVE_CONNECTIONS below
# Idle connections one worker may keep per upstream: every agent's pool (agents may share a
# server), the rate limiter's Redis pool plus the change listener and publisher, the psycopg pool.
POOL_CAPS = {
    "agent server": len(AGENTS) * KEEPALIVE_PER_AGENT,
    "redis": 16 + 2,  # access.ratelimit.REDIS_POOL_SIZE
    "postgresql": 4,  # DB_POOL_MAX_SIZE's default
}
COMMON_FIELDS: dict[str, Any] = {
    "timeout_s": 2.0,
    "connect_timeout_s": 0.5,
    "breaker_fail_max": 3,
    "breaker_reset_s": 30.0,
}
# What traffic sends as config.modalidad (as sent; the gateway trims and lower-cases).
MODALIDADES: dict[str, str] = {
    "alpha": "alpha",
    "ALFA ": "alpha",
    "beta": "beta",
    " Gamma": "gamma",
    "delta": "delta",
}
# API key name -> traffic share
KEYS: dict[str, float] = {"stable": 0.5, "revoked": 0.25, "deleted": 0.25}


# -- the operator: ORM changes in a subprocess -----------------------------------------------------

_OPERATOR_DRIVER = r"""
import contextlib, io, json, sys, traceback
from django.db import connection
for line in sys.stdin:
    code = json.loads(line)
    out = io.StringIO()
    result = {"ok": True}
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {})
    except BaseException:
        result = {"ok": False, "error": traceback.format_exc()}
    finally:
        with contextlib.suppress(Exception):
            connection.close()  # back to the pool; the next command gets a checked connection
    result["out"] = out.getvalue()
    sys.__stdout__.write("@@SOAK@@ " + json.dumps(result) + "\n")
    sys.__stdout__.flush()
"""


class Operator:
    """One long-lived `manage.py shell` running ORM snippets sent to it, one at a time (as an
    admin's saves: model save()/delete() and agents.services, so the app's signals fire)."""

    def __init__(self, db: LiveDatabase, log_path: Path) -> None:
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", _OPERATOR_DRIVER],
            cwd=ROOT,
            env=db.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="soak-operator", daemon=True)
        self._reader.start()
        self._lock = threading.Lock()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("@@SOAK@@ "):
                self._lines.put(line[len("@@SOAK@@ ") :])
        self._lines.put("")  # EOF

    def run(self, code: str, timeout: float = OPERATOR_TIMEOUT_S) -> str:
        """Run `code` in the operator process; its stdout. Raises on any error."""
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(code) + "\n")
            self.process.stdin.flush()
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"operator gave no answer in {timeout}s to:\n{code}") from None
        if not line:
            raise RuntimeError(f"operator process exited (status {self.process.poll()})")
        result = json.loads(line)
        if not result["ok"]:
            raise RuntimeError(f"operator change failed:\n{code}\n{result['error']}")
        return str(result["out"])

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._reader.join(5)
        self._log.close()


def _agent_create_code(key: str, url: str) -> str:
    names, _, fields = AGENTS[key]
    spec = {**COMMON_FIELDS, **fields}
    return (
        "import json\n"
        "from agents.models import Agent, RoutingName\n"
        f"fields = json.loads({json.dumps(json.dumps(spec))})\n"
        f"a = Agent(key={key!r}, name={key.title()!r}, url={url!r}, **fields)\n"
        "a.full_clean()\n"
        "a.save()\n"
        f"for name in {names!r}:\n"
        "    RoutingName.objects.create(agent=a, name=name)\n"
    )


def _agent_edit_code(key: str, **changes: Any) -> str:
    sets = "".join(f"a.{name} = {value!r}\n" for name, value in changes.items())
    return (
        "from agents.models import Agent\n"
        f"a = Agent.objects.get(key={key!r})\n{sets}"
        "a.full_clean()\n"
        "a.save()\n"
    )


# -- processes -------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """Running, or still exiting. A zombie (killed, not yet reaped by its parent) whose other
    threads are gone is not: only then are its sockets closed (the thread group leader turns
    zombie while other threads, which share its descriptors, may still be exiting)."""
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
    except (OSError, ValueError):
        return False
    zombie = status.get("State", "").split()[0:1] in (["Z"], ["X"])
    return not (zombie and int(status.get("Threads", "1")) <= 1)


def uvicorn_workers(supervisor_pid: int) -> list[int]:
    """The live worker processes of a uvicorn supervisor (multiprocessing spawn children, not
    its resource tracker)."""
    return sorted(
        pid
        for pid in _children(supervisor_pid)
        if b"spawn_main" in _cmdline(pid) and b"resource_tracker" not in _cmdline(pid)
        and _alive(pid)
    )  # fmt: skip


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


_TCP_STATES = {"01": "", "06": " [TIME_WAIT]", "08": " [CLOSE_WAIT]", "0A": " [LISTEN]"}


def _tcp_peers(pid: int) -> dict[str, tuple[int, int, str]]:
    """socket inode -> (local port, remote port, state) of the process's TCP sockets."""
    peers: dict[str, tuple[int, int, str]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                local, remote = (int(c.rsplit(":", 1)[1], 16) for c in cols[1:3])
                peers[cols[9]] = (local, remote, _TCP_STATES.get(cols[3], f" [state {cols[3]}]"))
    return peers


def describe_fds(pid: int, ports: dict[int, str]) -> Counter[str]:
    """What a process's fds are: TCP sockets by peer (named from `ports`), pipes, files..."""
    peers = _tcp_peers(pid)
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            local, remote, state = peers.get(target[8:-1], (0, 0, ""))
            if local in ports:
                kinds[f"tcp {ports[local]}" + (" (inbound)" if remote else "") + state] += 1
            elif remote in ports:
                kinds[f"tcp to {ports[remote]}{state}"] += 1
            else:
                kinds["socket (other)"] += 1
        elif target.startswith(("pipe:", "anon_inode:")):
            kinds[target.split("[")[0].rstrip(":")] += 1
        else:
            kinds["file"] += 1
    return kinds


# -- metrics ---------------------------------------------------------------------------------------

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """Sample name -> [(labels, value)]. A series that is not there is simply absent."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def series_for(samples: Samples, name: str, agent: str) -> list[float]:
    return [value for labels, value in samples.get(name, []) if labels.get("agent") == agent]


LIVE_GAUGES = (
    "gateway_inflight_requests",
    "gateway_circuit_breaker_state",
    "gateway_agent_concurrency_limit",
)


# -- what happened ---------------------------------------------------------------------------------


@dataclass
class Answer:
    loop: int
    start: float
    end: float
    modalidad: str  # as sent
    key: str  # API key name used
    status: int | None = None  # None: no HTTP answer (transport error)
    fallback: str | None = None
    detail: str | None = None
    error: str | None = None  # the transport error's type and text
    problems: list[str] = field(default_factory=list)  # shape problems, judged on arrival

    @property
    def agent(self) -> str:
        return MODALIDADES[self.modalidad]


@dataclass
class Event:
    name: str
    planned: float
    launch: float = 0.0
    done: float = 0.0
    note: str = ""


@dataclass
class SoakResult:
    answers: list[Answer]
    events: dict[str, Event]
    distribution: Counter[str]
    violations: list[str]
    facts: list[str]
    gateway_log_tail: str = ""

    def report(self) -> str:
        t0 = self.events["traffic"].launch if "traffic" in self.events else 0.0
        lines = ["schedule (s from traffic start: launched -> done):"]
        for event in sorted(self.events.values(), key=lambda e: e.launch):
            if event.name == "traffic":
                continue
            lines.append(
                f"  {event.launch - t0:6.1f} -> {event.done - t0:6.1f}  {event.name}"
                + (f"  ({event.note})" if event.note else "")
            )
        lines.append(f"answers ({len(self.answers)} requests):")
        width = max((len(label) for label in self.distribution), default=0)
        for label, count in sorted(self.distribution.items()):
            lines.append(f"  {label:<{width}}  {count}")
        lines += [f"  {fact}" for fact in self.facts]
        if self.violations:
            lines.append(f"INVARIANTS BROKEN ({len(self.violations)}):")
            lines += [f"  - {violation}" for violation in self.violations]
        else:
            lines.append("every invariant held")
        return "\n".join(lines)


# -- the harness -----------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    duration: float = 45.0
    loops: int = 24
    seed: int | None = None
    warmup: float = 3.0
    pause_max: float = 0.02  # each loop's pause between requests (0..this, uniform)


class Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.agents: list[FaultAgent] = []
        self.gateway: GatewayProcess | None = None
        self.operator: Operator | None = None
        self.db: LiveDatabase | None = None
        self.plain_keys: dict[str, str] = {}
        self.events: dict[str, Event] = {}
        self.answers: list[Answer] = []
        self.violations: list[str] = []
        self.facts: list[str] = []
        self.killed_pid: int | None = None
        self.survivor_pid: int | None = None
        self.baseline_fd_kinds: dict[int, Counter[str]] = {}
        self.lost = 0  # transport errors of requests in flight on the killed worker

    # -- setup / teardown ------------------------------------------------------------------------

    def setup(self) -> None:
        self.postgres = PostgresServer().init()
        self.postgres.start()
        self.postgres.create_database("gateway")
        self.redis = RedisServer().start()
        env = {
            **os.environ,
            "DATABASE_URL": self.postgres.url("gateway"),
            "REDIS_URL": self.redis.url,
            "DEBUG": "0",
            "SECRET_KEY": "soak-secret-" + uuid.uuid4().hex,
            "ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "REGISTRY_POLL_INTERVAL_S": str(POLL_INTERVAL_S),
            # Rate limits stay on (in Redis) but far above this traffic: a 429 is not expected.
            "RATE_LIMIT_PER_MINUTE": "100000000",
            # A few idle connections per agent pool, so the fd baseline is steady.
            "AGENT_KEEPALIVE_CONNECTIONS": str(KEEPALIVE_PER_AGENT),
        }
        for name in ("DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "GATEWAY_API_KEY"):
            env.pop(name, None)
        self.db = LiveDatabase(env=env)
        self.db.manage("migrate", "--no-input", "--verbosity", "0", timeout=120)
        self.agents = [FaultAgent().start(), FaultAgent().start()]
        self.operator = Operator(self.db, self.tmp / "operator.log")
        self.operator.run("from agents.models import Agent\nAgent.objects.all().delete()")
        for key, (_, path, _) in AGENTS.items():
            self.operator.run(_agent_create_code(key, self.agents[0].url(path)))
        for name in KEYS:
            out = self.operator.run(
                "from access.services import api_key_create\n"
                f"key, plain = api_key_create(name={name!r})\nprint(plain)"
            )
            self.plain_keys[name] = out.strip()
        metrics_dir = self.tmp / "prometheus"
        metrics_dir.mkdir()
        self.gateway = start_gateway(
            self.db,
            "--workers",
            str(WORKERS),
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            ready_timeout=40,
        )
        deadline = time.monotonic() + 20
        while len(uvicorn_workers(self.gateway.process.pid)) < WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{WORKERS} workers never came up:\n{self.gateway.logs()}")
            time.sleep(0.1)

    def teardown(self) -> None:
        if self.gateway is not None:
            self.gateway.stop(signal.SIGTERM, timeout=15)
            with contextlib.suppress(OSError):
                self.gateway.log_path.unlink()
        if self.operator is not None:
            self.operator.close()
        for agent in self.agents:
            agent.stop()
        if self.redis is not None:
            self.redis.destroy()
        if self.postgres is not None:
            self.postgres.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- traffic ---------------------------------------------------------------------------------

    async def _traffic_loop(self, index: int, until: float, out: list[Answer]) -> None:
        assert self.gateway is not None
        rng = random.Random(self.rng.random())
        modalidades = list(MODALIDADES)
        key_names, weights = list(KEYS), list(KEYS.values())
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=self.gateway.url, timeout=CLIENT_TIMEOUT_S, limits=limits
        ) as client:
            for number in range(MAX_REQUESTS_PER_LOOP):
                if time.monotonic() >= until:
                    break
                modalidad = rng.choice(modalidades)
                key = rng.choices(key_names, weights)[0]
                session_id = rng.randint(1, 10**6)
                request_id = f"soak-{index}-{number}"
                body = chat_body(
                    message=f"hola {number}", session_id=session_id,
                    config={"modalidad": modalidad},
                )  # fmt: skip
                headers = {"X-API-Key": self.plain_keys[key], "X-Request-ID": request_id}
                answer = Answer(loop=index, start=time.monotonic(), end=0.0, modalidad=modalidad,
                                key=key)  # fmt: skip
                try:
                    response = await client.post(CHAT, json=body, headers=headers)
                except httpx.TransportError as exc:
                    answer.end = time.monotonic()
                    answer.error = f"{type(exc).__name__}: {exc}"
                except httpx.HTTPError as exc:  # not a transport error: never expected
                    answer.end = time.monotonic()
                    answer.error = f"{type(exc).__name__}: {exc}"
                    answer.problems.append(f"client error {answer.error}")
                else:
                    answer.end = time.monotonic()
                    _judge_shape(answer, response, request_id, session_id)
                out.append(answer)
                await asyncio.sleep(rng.uniform(0, self.config.pause_max))

    async def _traffic(self, seconds: float, out: list[Answer]) -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(self._traffic_loop(i, until, out) for i in range(self.config.loops)))

    # -- the schedule ----------------------------------------------------------------------------

    def _schedule(self) -> list[tuple[float, str, Callable[[], Awaitable[str]]]]:
        """(seconds after traffic starts, name, action) on a 45 s plan, scaled to the duration."""
        assert self.postgres is not None and self.redis is not None
        fa1, fa2 = self.agents
        refused = refused_url("/ok")
        operator = self.operator
        assert operator is not None
        postgres, redis = self.postgres, self.redis

        def orm(code: str) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                return await asyncio.to_thread(operator.run, code)

            return run

        def blocking(fn: Callable[[], Any]) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                await asyncio.to_thread(fn)
                return ""

            return run

        plan: list[tuple[float, str, Callable[[], Awaitable[str]]]] = [
            (2.0, "alpha url -> second agent server",
             orm(_agent_edit_code("alpha", url=fa2.url("/ok")))),
            (4.0, "gamma disabled", orm(
                "from agents.services import agent_set_enabled\n"
                "agent_set_enabled(keys=['gamma'], enabled=False)")),
            (6.0, "alpha url -> refusing port", orm(_agent_edit_code("alpha", url=refused))),
            (8.0, "beta timeout 2.0 -> 0.5 s", orm(_agent_edit_code("beta", timeout_s=0.5))),
            (10.0, "gamma enabled", orm(
                "from agents.services import agent_set_enabled\n"
                "agent_set_enabled(keys=['gamma'], enabled=True)")),
            (12.0, "alpha url -> first agent server",
             orm(_agent_edit_code("alpha", url=fa1.url("/ok")))),
            (14.0, "alpha breaker reset", orm(
                "from agents.services import breaker_reset_request\n"
                "breaker_reset_request(keys=['alpha'])")),
            (16.0, "beta timeout 0.5 -> 2.0 s", orm(_agent_edit_code("beta", timeout_s=2.0))),
            (17.0, "delta deleted", orm(
                "from agents.models import Agent\nAgent.objects.get(key='delta').delete()")),
            (19.0, "delta re-created", orm(_agent_create_code("delta", fa1.url("/ok")))),
            (21.0, "worker SIGKILLed", self._kill_worker),
            (24.0, "key 'revoked' revoked", orm(
                "from access.models import ApiKey\n"
                "k = ApiKey.objects.get(name='revoked')\n"
                "k.enabled = False\nk.save(update_fields=['enabled'])")),
            (26.0, "Redis stopped", blocking(redis.stop)),
            (28.0, "key 'deleted' deleted", orm(
                "from access.models import ApiKey\nApiKey.objects.get(name='deleted').delete()")),
            (30.0, "Redis started", blocking(redis.start)),
            (32.0, "PostgreSQL stopped", blocking(postgres.stop)),
            (36.0, "PostgreSQL started", blocking(postgres.start)),
            (38.0, "gamma deleted (for good)", orm(
                "from agents.models import Agent\nAgent.objects.get(key='gamma').delete()")),
        ]  # fmt: skip
        scale = self.config.duration / 45.0
        return [(at * scale, name, action) for at, name, action in plan]

    async def _kill_worker(self) -> str:
        assert self.gateway is not None
        workers = uvicorn_workers(self.gateway.process.pid)
        if len(workers) < WORKERS:
            raise RuntimeError(f"expected {WORKERS} workers to kill one of, found {workers}")
        victim = self.killed_pid = workers[0]
        self.survivor_pid = workers[1]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        while _alive(victim) and time.monotonic() - killed_at < 5:
            await asyncio.sleep(0.002)
        if _alive(victim):
            raise RuntimeError(f"worker {victim} still alive 5 s after SIGKILL")
        return f"pid {victim}; survivor {self.survivor_pid}"

    async def _run_schedule(self, t0: float) -> None:
        for at, name, action in self._schedule():
            event = self.events[name] = Event(name=name, planned=at)
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            event.launch = time.monotonic()
            try:
                event.note = (await action()).strip()
            except Exception as exc:
                event.note = f"FAILED: {exc}"
                self.violations.append(f"harness: schedule step {name!r} failed: {exc}")
            event.done = time.monotonic()
            if event.launch - (t0 + at) > 3.0:
                event.note += f" [{event.launch - t0 - at:.1f}s late]"

    # -- the run ---------------------------------------------------------------------------------

    def scrape(self) -> Samples:
        assert self.gateway is not None
        response = httpx.get(f"{self.gateway.url}/metrics", timeout=10)
        response.raise_for_status()
        return parse_metrics(response.text)

    async def _main(self) -> None:
        assert self.gateway is not None
        # Warm-up: every agent pool, Redis and DB pool in use, so the fd baseline is steady.
        # At least `warmup` seconds and 10 requests a loop (at most 4 rounds): pools filled.
        warmup: list[Answer] = []
        warm_started = time.monotonic()
        for _ in range(4):
            await self._traffic(self.config.warmup, warmup)
            if len(warmup) >= 10 * self.config.loops:
                break
        await asyncio.sleep(1.0)  # the warm-up's client connections close on the server side
        workers = uvicorn_workers(self.gateway.process.pid)
        baseline_fds = {pid: open_fds(pid) for pid in workers}
        self.baseline_fd_kinds = {pid: describe_fds(pid, self._ports()) for pid in workers}
        before = await asyncio.to_thread(self.scrape)
        warm_statuses = Counter(a.status for a in warmup)
        self.facts.append(
            f"warm-up: {len(warmup)} requests in {time.monotonic() - warm_started:.1f}s, "
            f"statuses {dict(warm_statuses)}"
        )

        t0 = time.monotonic()
        self.events["traffic"] = Event(name="traffic", planned=0.0, launch=t0)
        schedule = asyncio.create_task(self._run_schedule(t0))
        await self._traffic(self.config.duration, self.answers)
        traffic_end = time.monotonic()
        self.events["traffic"].done = traffic_end
        await schedule

        # Let what the contract bounds settle: gauges of the deleted agent and the dead worker.
        settle_until = traffic_end + 3.0
        if (kill := self.events.get("worker SIGKILLed")) and kill.done:
            settle_until = max(settle_until, kill.done + DEAD_WORKER_GONE_S)
        if (gone := self.events.get("gamma deleted (for good)")) and gone.done:
            settle_until = max(settle_until, gone.done + GAUGE_GONE_S)
        await asyncio.sleep(max(0.0, settle_until - time.monotonic()))
        after = await asyncio.to_thread(self.scrape)
        self.facts.append(
            f"traffic ran {traffic_end - t0:.1f}s, then {time.monotonic() - traffic_end:.1f}s "
            "of settling before the final scrape"
        )

        self._judge_answers()
        self._judge_metrics(before, after)
        await self._judge_fds(baseline_fds)

    def run(self) -> SoakResult:
        phases: list[str] = []
        started = time.monotonic()
        try:
            self.setup()
            phases.append(f"setup {time.monotonic() - started:.1f}s")
            started = time.monotonic()
            asyncio.run(self._main())
            phases.append(f"run {time.monotonic() - started:.1f}s")
        except Exception as exc:
            detail = ""
            if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
                detail = "\n" + "\n".join(str(exc.stderr).splitlines()[-15:])
            self.violations.append(f"harness: {type(exc).__name__}: {exc}{detail}")
        finally:
            tail = ""
            if self.gateway is not None:
                tail = "\n".join(line[:300] for line in self.gateway.logs().splitlines()[-30:])
            started = time.monotonic()
            self.teardown()
            phases.append(f"teardown {time.monotonic() - started:.1f}s")
            self.facts.append("time: " + ", ".join(phases))
        return SoakResult(
            answers=self.answers,
            events=self.events,
            distribution=self.distribution(),
            violations=self.violations,
            facts=self.facts,
            gateway_log_tail=tail,
        )

    # -- judging ---------------------------------------------------------------------------------

    def _kill_window(self) -> tuple[float, float] | None:
        kill = self.events.get("worker SIGKILLed")
        if kill is None or not kill.done or kill.note.startswith("FAILED"):
            return None
        return kill.launch, kill.done  # SIGKILL sent .. the worker seen dead

    def lost_to_kill(self, answer: Answer) -> bool:
        window = self._kill_window()
        if window is None or answer.status is not None or answer.problems:
            return False
        sent, dead = window
        return answer.start <= dead and sent <= answer.end <= dead + LOST_WINDOW_S

    def distribution(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for answer in self.answers:
            if answer.status is None:
                kind = (answer.error or "").split(":", 1)[0]
                counts[f"lost to the kill ({kind})" if self.lost_to_kill(answer)
                       else f"transport error ({kind})"] += 1  # fmt: skip
            elif answer.status == 200:
                counts[f"200 X-Gateway-Fallback: {answer.fallback}" if answer.fallback
                       else "200 ok"] += 1  # fmt: skip
            elif answer.status == 400 and (answer.detail or "").startswith("Modalidad no"):
                counts["400 Modalidad no reconocida"] += 1
            else:
                counts[f"{answer.status} {answer.detail}"] += 1
        return counts

    def _removal(self, key_or_agent: str) -> list[tuple[float, float]]:
        """(from, until) windows in which a request may find `key_or_agent` removed."""
        e = self.events
        inf = float("inf")

        def started(name: str) -> float | None:
            event = e.get(name)
            return event.launch if event and event.launch else None

        windows: list[tuple[float, float]] = []
        if key_or_agent == "delta" and (gone := started("delta deleted")):
            back = e.get("delta re-created")
            windows.append((gone, back.done + PROPAGATION_S if back and back.done else inf))
        if key_or_agent == "gamma" and (gone := started("gamma deleted (for good)")):
            windows.append((gone, inf))
        if key_or_agent == "revoked" and (gone := started("key 'revoked' revoked")):
            windows.append((gone, inf))
        if key_or_agent == "deleted" and (gone := started("key 'deleted' deleted")):
            windows.append((gone, inf))
        return windows

    def _judge_answers(self) -> None:
        t0 = self.events["traffic"].launch
        bad: Counter[str] = Counter()
        examples: dict[str, str] = {}

        def flag(kind: str, answer: Answer, text: str) -> None:
            bad[kind] += 1
            examples.setdefault(
                kind,
                f"{text} (loop {answer.loop}, t={answer.start - t0:.2f}..{answer.end - t0:.2f}s, "
                f"modalidad {answer.modalidad!r}, key {answer.key!r})",
            )

        def removed(name: str, answer: Answer) -> bool:
            # the change may reach the request's worker any time after it was launched
            return any(
                answer.end >= since and answer.start <= until
                for since, until in self._removal(name)
            )

        reset = self.events.get("alpha breaker reset")
        lost = 0
        for answer in self.answers:
            for problem in answer.problems:
                flag(f"shape: {problem.split(':', 1)[0]}", answer, problem)
            if answer.status is None:
                if self.lost_to_kill(answer):
                    lost += 1
                elif not answer.problems:
                    flag("dropped connection (transport error)", answer, answer.error or "")
            elif answer.status == 200:
                if (
                    answer.fallback == "circuit_open"
                    and answer.agent == "alpha"
                    and reset
                    and reset.done
                    and answer.start > reset.done + PROPAGATION_S
                ):
                    flag("alpha circuit_open after the breaker reset", answer, "circuit_open")
            elif answer.status == 400:
                if not (answer.detail == f"Modalidad no reconocida: {answer.modalidad}"
                        and removed(answer.agent, answer)):  # fmt: skip
                    flag("400 where the routing name was not removed", answer, str(answer.detail))
            elif answer.status == 401:
                if not removed(answer.key, answer):
                    flag("401 with a key that was not revoked or deleted", answer, "401")
            elif answer.status in (403, 503):
                pass  # allowed any time (the shape was judged on arrival)
            else:
                flag(f"status {answer.status}", answer, f"{answer.status} {answer.detail}")
        self._judge_propagation(flag)
        for kind, count in sorted(bad.items()):
            self.violations.append(f"{kind}: {count}, e.g. {examples[kind]}")
        self.lost = lost
        if lost > self.config.loops:
            self.violations.append(
                f"{lost} requests lost to the kill, more than the {self.config.loops} loops "
                "(each has one request in flight at most)"
            )
        if not self.answers:
            self.violations.append("harness: no traffic was sent")

    def _judge_propagation(self, flag: Callable[[str, Answer, str], None]) -> None:
        """A change is in force once it has reached every worker (PROPAGATION_S after it was
        saved, the README's bound) until the next change undoes it: answers in that span must
        show it."""

        def answered(a: Answer) -> bool:
            return a.status == 200 and a.fallback is None

        checks: list[tuple[str, str | None, str, Callable[[Answer], bool], str]] = [
            ("gamma disabled", "gamma enabled", "gamma",
             lambda a: a.status == 200 and a.fallback != "disabled", "gamma not disabled"),
            ("alpha url -> refusing port", "alpha url -> first agent server", "alpha",
             answered, "alpha replied while its URL refused connections"),
            ("beta timeout 2.0 -> 0.5 s", "beta timeout 0.5 -> 2.0 s", "beta",
             answered, "beta's 0.8 s reply accepted under a 0.5 s timeout"),
            ("delta deleted", "delta re-created", "delta",
             lambda a: a.status == 200, "delta routed while deleted"),
            ("gamma deleted (for good)", None, "gamma",
             lambda a: a.status == 200, "gamma routed after it was deleted"),
            ("key 'revoked' revoked", None, "key:revoked",
             lambda a: a.status in (200, 400, 403), "revoked key accepted"),
            ("key 'deleted' deleted", None, "key:deleted",
             lambda a: a.status in (200, 400, 403), "deleted key accepted"),
        ]  # fmt: skip
        for since_name, until_name, who, wrong, kind in checks:
            since = self.events.get(since_name)
            until = self.events.get(until_name) if until_name else None
            if since is None or not since.done or since.note.startswith("FAILED"):
                continue
            begin = since.done + PROPAGATION_S
            end = until.launch if until is not None and until.launch else float("inf")
            for answer in self.answers:
                mine = answer.key == who[4:] if who.startswith("key:") else answer.agent == who
                if mine and answer.start > begin and answer.end < end and wrong(answer):
                    flag(
                        f"change not in force {PROPAGATION_S}s after it was saved: {kind}",
                        answer,
                        f"{answer.status} {answer.fallback or answer.detail or ''}",
                    )

    def _answered_at_kill(self) -> int:
        """Answers received between the SIGKILL and the worker seen dead: one of them may have
        been delivered by the dying worker before it counted it."""
        window = self._kill_window()
        if window is None:
            return 0
        sent, dead = window
        return sum(1 for a in self.answers if a.status is not None and sent - 0.01 <= a.end <= dead)

    def _judge_metrics(self, before: Samples, after: Samples) -> None:
        assert self.gateway is not None
        v = self.violations
        # Every answer counted once.
        if "gateway_requests_total" not in before or "gateway_requests_total" not in after:
            v.append("gateway_requests_total missing from /metrics (before or after the soak)")
        else:
            counted = sum(x for _, x in after["gateway_requests_total"]) - sum(
                x for _, x in before["gateway_requests_total"]
            )
            answered = sum(1 for a in self.answers if a.status is not None)
            difference = counted - answered
            self.facts.append(
                f"gateway_requests_total grew by {counted:.0f} for {answered} answers "
                f"(difference {difference:+.0f}; lost to the kill {self.lost})"
            )
            slack_below = self._answered_at_kill()
            if not -slack_below <= difference <= self.lost:
                by_status = Counter(str(a.status) for a in self.answers if a.status is not None)
                grown: Counter[str] = Counter()
                for labels, value in after["gateway_requests_total"]:
                    grown[labels.get("status", "?")] += int(value)
                for labels, value in before["gateway_requests_total"]:
                    grown[labels.get("status", "?")] -= int(value)
                v.append(
                    f"gateway_requests_total grew by {counted:.0f} but {answered} answers were "
                    f"received (difference {difference:+.0f}; allowed {-slack_below}..+{self.lost}"
                    f"); answers by status {dict(sorted(by_status.items()))}, counted by status "
                    f"{dict(sorted(grown.items()))}"
                )
        # In-flight gauges back to 0, and present for every agent still configured.
        surviving = [key for key in AGENTS if key != "gamma"]
        for labels, value in after.get("gateway_inflight_requests", []):
            if value != 0:
                v.append(f"gateway_inflight_requests{labels} = {value} after traffic stopped")
        for key in surviving:
            if not series_for(after, "gateway_inflight_requests", key):
                v.append(f"gateway_inflight_requests{{agent={key!r}}} missing from /metrics")
        # No live gauge for the agent deleted for good.
        for name in LIVE_GAUGES:
            if values := series_for(after, name, "gamma"):
                v.append(f"{name}{{agent='gamma'}} still in /metrics after gamma was deleted "
                         f"(values {values})")  # fmt: skip
        live = {name: {labels.get("agent", "?"): value for labels, value in after.get(name, [])}
                for name in LIVE_GAUGES}  # fmt: skip
        self.facts.append(f"live gauges at the end: {live}")
        # The killed worker no longer counts: limit summed over live workers.
        workers = uvicorn_workers(self.gateway.process.pid)
        self.facts.append(f"workers alive at the end: {workers} (killed {self.killed_pid})")
        if self.killed_pid in workers:
            v.append(f"the killed worker {self.killed_pid} is still alive")
        for key in surviving:
            limit = {**COMMON_FIELDS, **AGENTS[key][2]}["max_concurrency"]
            values = series_for(after, "gateway_agent_concurrency_limit", key)
            if not values:
                v.append(f"gateway_agent_concurrency_limit{{agent={key!r}}} missing from /metrics")
            elif sum(values) != len(workers) * limit:
                v.append(
                    f"gateway_agent_concurrency_limit{{agent={key!r}}} = {sum(values):g}, "
                    f"expected {len(workers)} live workers x {limit} = {len(workers) * limit}"
                )

    async def _judge_fds(self, baseline: dict[int, int]) -> None:
        """No leak in the surviving original worker: its pooled upstream connections stay within
        the pools' caps (how full a pool is after the warm-up depends on the machine's speed),
        and every other descriptor (client sockets, pipes, files) is back to its baseline."""
        pid = self.survivor_pid
        if pid is None or pid not in baseline:
            self.violations.append("harness: no surviving original worker to count fds of")
            return
        if not _alive(pid):
            self.violations.append(f"the surviving original worker {pid} died")
            return
        deadline = time.monotonic() + 5.0
        over = self._fd_excess(pid)
        while over and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            over = self._fd_excess(pid)
        kinds = describe_fds(pid, self._ports())
        kinds.subtract(self.baseline_fd_kinds.get(pid, Counter()))
        grown = {kind: n for kind, n in sorted(kinds.items()) if n}
        self.facts.append(
            f"surviving worker {pid}: {baseline[pid]} fds before, {open_fds(pid)} after; "
            f"change by kind {grown}"
        )
        self.violations.extend(f"surviving worker {pid}: {problem}" for problem in over)

    def _fd_excess(self, pid: int) -> list[str]:
        kinds = describe_fds(pid, self._ports())
        pooled = {name: sum(n for kind, n in kinds.items() if kind.startswith(f"tcp to {name}"))
                  for name in POOL_CAPS}  # fmt: skip
        problems = [
            f"{count} connections to {name}, over its pools' cap of {POOL_CAPS[name]}"
            for name, count in pooled.items()
            if count > POOL_CAPS[name]
        ]
        others = sum(kinds.values()) - sum(pooled.values())
        base = self.baseline_fd_kinds.get(pid, Counter())
        base_others = sum(n for kind, n in base.items() if not kind.startswith("tcp to "))
        if others > base_others + FD_TOLERANCE:
            problems.append(
                f"{others} descriptors besides upstream pools after traffic stopped, baseline "
                f"{base_others} (tolerance +{FD_TOLERANCE})"
            )
        return problems

    def _ports(self) -> dict[int, str]:
        ports = {agent.port: f"agent server {i + 1}" for i, agent in enumerate(self.agents)}
        if self.gateway is not None:
            ports[self.gateway.port] = "gateway"
        if self.redis is not None:
            ports[self.redis.port] = "redis"
        if self.postgres is not None:
            ports[self.postgres.port] = "postgresql"
        return ports


def _judge_shape(
    answer: Answer, response: httpx.Response, request_id: str, session_id: int
) -> None:
    """The contract's shape for this status (CONTRACT section 1); problems go in `answer`."""
    answer.status = response.status_code
    answer.fallback = response.headers.get("X-Gateway-Fallback")
    problems = answer.problems
    if response.headers.get("X-Request-ID") != request_id:
        problems.append(
            f"X-Request-ID: {response.headers.get('X-Request-ID')!r} for {request_id!r}"
        )
    try:
        body = response.json()
    except ValueError:
        problems.append(f"not JSON: {response.status_code} {response.text[:200]!r}")
        return
    if response.status_code == 200:
        if not isinstance(body, dict) or set(body) != {"reply", "session_id", "agent_used", "url"}:
            problems.append(f"200 body keys: {body!r:.200}")
            return
        if not isinstance(body["reply"], str) or not body["reply"]:
            problems.append(f"200 reply: {body['reply']!r}")
        if body["session_id"] != session_id:
            problems.append(f"200 session_id: {body['session_id']!r} for {session_id}")
        if body["agent_used"] != answer.agent:
            problems.append(f"200 agent_used: {body['agent_used']!r} for {answer.agent!r}")
        if not (body["url"] is None or isinstance(body["url"], str)):
            problems.append(f"200 url: {body['url']!r}")
        if answer.fallback and body["url"] is not None:
            problems.append(f"200 url on a fallback: {body['url']!r}")
        return
    if not isinstance(body, dict) or set(body) != {"detail"} or not isinstance(body["detail"], str):
        problems.append(f"{response.status_code} body: {body!r:.200}")
        return
    answer.detail = body["detail"]
    if response.status_code == 401 and body != NO_AUTH:
        problems.append(f"401 body: {body!r}")
    if response.status_code == 503:
        retry_after = response.headers.get("Retry-After", "")
        if not retry_after.isdigit() or int(retry_after) < 1:
            problems.append(f"503 Retry-After: {retry_after!r}")


def run_soak(config: SoakConfig) -> SoakResult:
    return Soak(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (60)")
    parser.add_argument("--loops", type=int, default=24, help="concurrent request loops (24)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 600 or not 1 <= args.loops <= 256:
        parser.error("--duration must be 10..600 s and --loops 1..256")
    result = run_soak(SoakConfig(duration=args.duration, loops=args.loops, seed=args.seed))
    print(result.report())
    if result.violations and result.gateway_log_tail:
        print("gateway log (last lines):\n" + result.gateway_log_tail)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
