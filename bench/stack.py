"""The processes of one bench run: the agent stub, the gateway and the reference proxies."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.stub.nginx import nginx_available, nginx_command

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
API_KEY = "bench-key"
SERVER_CPU = "0"  # the server under test; the load generator and the stub run on the other core
LOAD_CPU = 1


def uvicorn_command(app: str, port: int, *, workers: int = 1) -> list[str]:
    # Not --fd: uvicorn takes an fd for a UNIX socket, so TCP_NODELAY is never set and every
    # response waits for the client's delayed ACK (~40 ms).
    command = [PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    http = "httptools"
    if app.startswith("gateway_project."):  # the allocator and protocol the container runs
        command = ["sh", str(ROOT / "deploy" / "with-allocator.sh"), *command]
        http = "edge.header_timeout:HeaderTimeoutProtocol"
    command += ["--loop", "uvloop", "--backlog", "4096"]
    command += ["--http", http, "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    sock: socket.socket | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return [p for p in procs.children(self.proc.pid) if procs.is_worker(p)] or [self.proc.pid]

    def rss_mb(self) -> float:
        return sum(procs.rss_mb(pid) for pid in self.worker_pids())

    def cpu_s(self) -> float:
        return procs.cpu_s(self.worker_pids())

    def allocator(self) -> str:
        maps = Path(f"/proc/{self.worker_pids()[0]}/maps").read_text()
        return "jemalloc" if "libjemalloc" in maps else "pymalloc"


@dataclass
class Stack:
    workdir: Path
    servers: list[Server] = field(default_factory=list)
    dead: socket.socket | None = None
    _sigterm: Any = field(default=None, init=False, repr=False)  # the handler before ours

    def __enter__(self) -> "Stack":
        # A bench stopped with SIGTERM (`kill`, `timeout`) stops what it started: the signal
        # raises SystemExit, so __exit__ runs; by default it would leave the servers running.
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        for server in reversed(self.servers):
            procs.stop(server.proc)
            if server.sock is not None:
                server.sock.close()
        if self.dead is not None:
            self.dead.close()

    def stop(self, server: Server) -> None:
        procs.stop(server.proc)
        if server.sock is not None:
            server.sock.close()
        self.servers.remove(server)

    def start_stub(self) -> Server:
        log = self.workdir / "stub.log"
        if nginx_available():
            for _ in range(5):  # nginx binds its own port: retry if another process took it
                port = procs.free_port()
                proc = procs.start(nginx_command(self.workdir, port), env={}, log=log)
                try:
                    procs.wait_http(f"http://127.0.0.1:{port}/health", timeout_s=5, proc=proc)
                except (RuntimeError, TimeoutError):
                    procs.stop(proc)
                    continue
                return self._add(Server("nginx stub", proc, port))
            raise RuntimeError(f"nginx stub did not start; see {log}")
        return self.start_asyncio_stub()

    def start_asyncio_stub(self) -> Server:
        """bench/stub/agent.py, the stub that also streams (`/stream/...`)."""
        log = self.workdir / "stub.log"
        sock = procs.listening_socket()
        command = [PYTHON, "-m", "bench.stub.agent", "--fd", str(sock.fileno())]
        proc = procs.start(
            command, env={"PYTHONPATH": str(ROOT)}, log=log, pass_fds=(sock.fileno(),)
        )
        server = self._add(Server("asyncio stub", proc, sock.getsockname()[1], sock))
        procs.wait_http(f"{server.base}/health", proc=proc)
        return server

    def start_otlp_sink(self) -> Server:
        """The collector the traced gateways export to (bench/stub/otlp_sink.py), on core 1."""
        port = procs.free_port()
        command = [PYTHON, "-m", "bench.stub.otlp_sink", "--port", str(port)]
        proc = procs.start(
            command,
            env={"PYTHONPATH": str(ROOT)},
            log=self.workdir / "otlp_sink.log",
            cpus=str(LOAD_CPU),
        )
        server = self._add(Server("OTLP sink", proc, port))
        procs.wait_http(f"{server.base}/health", proc=proc)
        return server

    def start_busy_loop(self) -> None:
        """A process spinning on the servers' core for the rest of the run: each server under
        test gets about half of it, as on a machine whose cores are half as fast."""
        command = [PYTHON, "-c", "while True: pass"]
        proc = procs.start(command, env={}, log=self.workdir / "busy.log", cpus=SERVER_CPU)
        self.servers.append(Server("busy loop", proc, port=0))

    def dead_url(self) -> str:
        """An address that refuses connections (bound, never listening)."""
        self.dead = socket.socket()
        self.dead.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.dead.getsockname()[1]}/chat"

    def gateway_env(self, database: str = "gateway") -> dict[str, str]:
        return {
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
            "SECRET_KEY": "bench-only-secret",
            "DATABASE_URL": f"sqlite:///{self.workdir / database}.sqlite3",
            "GATEWAY_API_KEY": API_KEY,
            # Rate limiting stays on (its cost is measured) with a budget the load cannot spend.
            "RATE_LIMIT_PER_MINUTE": "100000000",
            "LOG_LEVEL": "INFO",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }

    def setup_gateway_db(self, stub: Server, env: dict[str, str] | None = None) -> None:
        """Migrate and fill the gateway's database (`env`: another gateway's, as
        `gateway_env(database)` gives it, plus e.g. BENCH_TENANTS)."""
        subprocess.run(
            [PYTHON, "-m", "bench.gateway_setup", stub.base, self.dead_url()],
            env={**os.environ, **(env or self.gateway_env())},
            cwd=ROOT,
            check=True,
            timeout=120,
        )

    def start_python(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        *,
        workers: int = 1,
        cpus: str | None = SERVER_CPU,
        ready_path: str = "/health/live",
    ) -> Server:
        log = self.workdir / f"{name.replace(' ', '_')}.log"
        for _ in range(5):  # uvicorn binds its own port: retry if another process took it
            port = procs.free_port()
            proc = procs.start(
                uvicorn_command(app, port, workers=workers),
                env={"PYTHONPATH": str(ROOT), **env},
                log=log,
                cpus=cpus,
            )
            try:
                procs.wait_http(f"http://127.0.0.1:{port}{ready_path}", proc=proc)
            except RuntimeError:
                continue
            server = self._add(Server(name, proc, port))
            if workers > 1:
                _wait_workers(server, workers)
            return server
        raise RuntimeError(f"{name} did not start; see {log}")

    def _add(self, server: Server) -> Server:
        self.servers.append(server)
        return server


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_workers(server: Server, workers: int) -> None:
    deadline = time.monotonic() + 30
    while len(procs.children(server.proc.pid)) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.name}: {workers} workers did not start")
        time.sleep(0.1)
    with contextlib.suppress(OSError):  # one worker per core
        for cpu, pid in enumerate(server.worker_pids()):
            os.sched_setaffinity(pid, {cpu % (os.cpu_count() or 1)})
