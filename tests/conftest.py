"""Shared fixtures: a fault-injecting agent server, agent rows, the gateway in-process (ASGI) and
as real uvicorn processes on a file database."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fault_agent import FaultAgent
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast_settings(settings: Any) -> None:
    settings.REGISTRY_POLL_INTERVAL_S = 0.2
    settings.GATEWAY_API_KEYS = []


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Every test starts with an empty, unstarted registry and key store and ends with the
    poller stopped."""
    from access.keys import key_store
    from fleet.sync import registry_sync
    from runtime.draining import draining
    from runtime.registry import registry

    registry_sync.stop()
    registry.clear()
    key_store.clear()
    draining.clear()
    yield
    registry_sync.stop()
    registry.clear()
    key_store.clear()
    draining.clear()


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Every test starts with no request counted against any caller's budget."""
    from access.ratelimit import rate_limiter

    rate_limiter.reset()
    yield
    rate_limiter.reset()


@pytest.fixture
def fault_agent() -> Iterator[FaultAgent]:
    agent = FaultAgent().start()
    yield agent
    agent.stop()


@pytest.fixture
def make_agent(transactional_db: Any) -> Callable[..., Any]:
    """Create an Agent row (committed, so server threads see it) with its routing names."""
    from agents.models import Agent, RoutingName

    def create(key: str, url: str, routing_names: Any, fields: dict[str, Any]) -> Any:
        fields.setdefault("name", key.title())
        agent = Agent.objects.create(key=key, url=url, **fields)
        for name in routing_names if routing_names is not None else [key]:
            RoutingName.objects.create(agent=agent, name=name)
        return agent

    def make(
        key: str = "cita",
        url: str = "http://127.0.0.1:9/ok",
        routing_names: Any = None,
        **fields: Any,
    ) -> Any:
        return in_thread(create, key, url, routing_names, fields)

    # Start from no agents: the seed migration's rows would otherwise route the defaults.
    in_thread(lambda: Agent.objects.all().delete())
    return make


def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run sync ORM code from sync or async tests (Django refuses the ORM inside a running loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result(timeout=30)


@pytest.fixture
async def gateway(transactional_db: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI application, driven in-process (on a database the registry's poller thread
    can read; torn down before it is flushed)."""
    import asyncio

    from fleet.sync import registry_sync
    from gateway_project.asgi import application
    from health.views import close_probe_clients
    from runtime.registry import registry

    # GatewayFront types its scope as a dict; httpx's ASGI types ask for a MutableMapping.
    transport = httpx.ASGITransport(app=application)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client
    # What lifespan shutdown does: stop the poller, close the clients on the loop that used them.
    await asyncio.to_thread(registry_sync.stop)
    await registry.aclose()
    await close_probe_clients()


def retry_after_at(wall_time: float) -> int:
    """The Retry-After a per-minute limit gives when it refuses at `wall_time`, while only the
    current window has hits: `limits`' sliding-window counters start on the wall-clock minute,
    so it is the whole seconds left in that minute (at least 1)."""
    return max(1, math.ceil(60 - wall_time % 60))


def start_inside_one_limit_window(*, seconds_needed: float) -> None:
    """Setup for rate-limit tests: if fewer than `seconds_needed` are left in this wall-clock
    minute, wait for the next one, so every hit of the test lands in one window."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": "Quiero agendar una cita",
        "session_id": 3796,
        "id_empresa": 1,
        "config": {"modalidad": "cita"},
    }
    body.update(overrides)
    return body


# -- real processes on a file database ---------------------------------------------------------


@dataclass
class LiveDatabase:
    """A migrated database (a SQLite file, or PostgreSQL in the scale-out tests) that
    subprocesses (gateways, management commands) share through DATABASE_URL in `env`."""

    env: dict[str, str] = field(default_factory=dict)

    def manage(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def python(self, code: str) -> str:
        """Run Django ORM code against this database in a fresh process; returns stdout."""
        return self.manage("shell", "--no-imports", "-c", code).stdout


def _file_db_env(path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{path}",
        "DEBUG": "1",
        "SECRET_KEY": "test-secret",
        "REGISTRY_POLL_INTERVAL_S": "0.2",
        "LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="session")
def _migrated_file_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated by `manage.py migrate`, with the seed's agents deleted; each
    `live_db` starts from a copy (3 s of migrating per test otherwise). The processes that wrote
    it have exited, so the WAL is checkpointed into the file and the file alone is the database."""
    path = tmp_path_factory.mktemp("migrated") / "gateway.sqlite3"
    template = LiveDatabase(env=_file_db_env(path))
    template.manage("migrate", "--no-input")
    template.python("from agents.models import Agent; Agent.objects.all().delete()")
    leftovers = [p.name for p in path.parent.iterdir() if p != path]
    assert not leftovers, f"the template database is more than one file: {leftovers}"
    return path


@pytest.fixture
def live_db(tmp_path: Path, _migrated_file_db: Path) -> LiveDatabase:
    path = tmp_path / "gateway.sqlite3"
    shutil.copyfile(_migrated_file_db, path)
    return LiveDatabase(env=_file_db_env(path))


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server (uvicorn's supervisor relays a graceful signal to its workers: a
        second copy would make them skip the drain). A SIGKILL, or a server still running after
        `timeout`, takes its whole process group while the supervisor still leads it, so no
        worker outlives the test."""
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                self._kill_group()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.process.wait(5)
        return self.process.returncode

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_gateway(
    db: LiveDatabase,
    *extra_args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 20,
    ready_path: str = "/health/ready",
) -> GatewayProcess:
    """A real gateway process, returned once `ready_path` answers 200 (/health/live for one
    that cannot be ready yet, e.g. with its database unreachable)."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
    with log.open("wb") as log_file:  # the child keeps its own copy of the descriptor
        process = _popen_uvicorn(port, extra_args, {**db.env, **(env or {})}, log_file)
    gateway = GatewayProcess(process=process, port=port, log_path=log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{gateway.logs()}")
        try:
            if httpx.get(f"{gateway.url}{ready_path}", timeout=1).status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    gateway.stop(signal.SIGKILL)
    raise RuntimeError(f"gateway not ready in {ready_timeout}s:\n{gateway.logs()}")


def _popen_uvicorn(
    port: int, extra_args: tuple[str, ...], env: dict[str, str], log_file: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.serve",
            "gateway_project.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "edge.header_timeout:HeaderTimeoutProtocol",
            *extra_args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop() can take every worker
    )


@pytest.fixture
def gateway_process(live_db: LiveDatabase) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(
        *extra_args: str, env: dict[str, str] | None = None, ready_path: str = "/health/ready"
    ) -> GatewayProcess:
        gateway = start_gateway(live_db, *extra_args, env=env, ready_path=ready_path)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop(
            signal.SIGKILL if gateway.process.poll() is None else signal.SIGTERM, timeout=10
        )
