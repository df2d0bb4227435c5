"""Instructions per chat request, counted by valgrind: an A/B that the machine's noise cannot move.

    python -m bench.instructions [--scenario instant] [--requests 1600] [--concurrency C]
                                 [--env NAME=VALUE ...] [--b-arg ARG ...]

Runs `bench.inprocess` under `valgrind --tool=callgrind` twice per side, with 160 and with
160 + N requests, and takes the difference over N: start-up, Django's set-up and the warm-up
cancel out, and what is left is the gateway's own instructions per request (the agent stub
runs in another process, uninstrumented). Side A is the environment as given; side B adds every
`--env` variable and passes every `--b-arg` to bench.inprocess (`--b-arg=--app --b-arg=reference`:
the FastAPI + aiohttp reference proxy as side B). The registry's poll thread is slowed to one poll per 10 minutes: its work
(worker state, every 2 s of wall-clock time) would otherwise be spread over the ~50 times fewer
requests a valgrind run answers per second, and swamp the figure. Instruction counts are repeatable to a fraction of a per cent whatever else the
machine is doing, unlike CPU time on a shared VM; they are a proxy for CPU (memory stalls are
not in them), so the timed benches stay the measure of speed, and this one decides a small A/B.
Each run takes about a minute.

    python -m bench.instructions --served [--requests N] [--connections C]

counts what a proxied call costs a served process instead: the gateway as `bench.run` serves it
(uvicorn, uvloop, the header-timeout protocol, jemalloc) and the FastAPI + aiohttp reference
under plain uvicorn, each under callgrind, answering `--connections` kept-alive connections
(threads of this process) to the nginx stub's instant agent: HTTP parsing, the event loop and the
allocator are in the count. Per side, the difference of two runs: 200 calls, then N more; and
200 calls, then as long idle (a SIGTERM ends each), so start-up and the work done by the clock
cancel out; the gateway's poll thread is slowed as above. valgrind's CPU lacks the
SHA extensions, so a key's SHA-256 (the gateway's, once per call) counts several times what it
costs on the machine: ~10k instructions against ~0.4 µs.
"""

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import procs
from bench.scenarios import AUTH, CHAT_PATH, chat_body
from bench.stack import ROOT, Stack, uvicorn_command

BASE_REQUESTS = 160
_COLLECTED = re.compile(r"Collected : (\d+)")


def _instructions(
    scenario: str, requests: int, env: dict[str, str], extra: list[str], concurrency: int
) -> int:
    with tempfile.TemporaryDirectory(prefix="gateway-callgrind-") as workdir:
        out = Path(workdir) / "callgrind.out"
        run = subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, "-m", "bench.inprocess", scenario,
                "--rounds", "1", "--requests", str(requests),
                "--concurrency", str(concurrency), *extra,
            ],
            cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0", "REGISTRY_POLL_INTERVAL_S": "600", **env},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    found = _COLLECTED.findall(run.stderr)
    if run.returncode != 0 or not found:
        raise SystemExit(f"valgrind run failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(found[-1])


def per_request(
    scenario: str, requests: int, env: dict[str, str], extra: list[str], concurrency: int
) -> float:
    low = _instructions(scenario, BASE_REQUESTS, env, extra, concurrency)
    high = _instructions(scenario, BASE_REQUESTS + requests, env, extra, concurrency)
    return (high - low) / requests


SERVED_WARMUP = 200
# side -> (the ASGI application, the path that answers once it is up)
SERVED_APPS = {
    "gateway": ("gateway_project.asgi:application", "/health/live"),
    "reference": ("bench.fastapi_ref.aiohttp_app:app", CHAT_PATH),
}


def _served_instructions(
    side: str, stack: Stack, stub_base: str, calls: int, connections: int, idle_s: float = 0.0
) -> tuple[int, float]:
    """User-space instructions of one served process (every thread) from its start until a
    SIGTERM after SERVED_WARMUP calls, then `calls` more on `connections` connections, then
    `idle_s` of nothing; and the seconds the `calls` took."""
    app, ready_path = SERVED_APPS[side]
    routes = f"instant={stub_base}/instant"
    env = {**os.environ, **stack.gateway_env(), "BENCH_ROUTES": routes, "PYTHONHASHSEED": "0",
           "REGISTRY_POLL_INTERVAL_S": "600"}  # fmt: skip
    port = procs.free_port()
    out = stack.workdir / f"callgrind-{side}-{calls}-{idle_s:g}"
    command = ["valgrind", "--tool=callgrind", "--trace-children=yes",
               f"--callgrind-out-file={out}.%p", *uvicorn_command(app, port)]  # fmt: skip
    log = (stack.workdir / f"{out.name}.log").open("wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        procs.wait_http(f"http://127.0.0.1:{port}{ready_path}", timeout_s=600, proc=server)
        _calls(port, SERVED_WARMUP, connections)
        started = time.monotonic()
        _calls(port, calls, connections)
        took = time.monotonic() - started
        time.sleep(idle_s)
        server.send_signal(signal.SIGTERM)
        server.wait(600)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    summaries = []
    for dump in stack.workdir.glob(f"{out.name}.*"):
        text = dump.read_text(errors="replace")
        found = re.search(r"^summary: (\d+)", text, re.M) if app in text[:4000] else None
        if found:
            summaries.append(int(found.group(1)))
    if len(summaries) != 1:
        raise SystemExit(f"{side}: expected one callgrind dump of the server, found {summaries}")
    return summaries[0], took


def _calls(port: int, calls: int, connections: int) -> None:
    """`calls` chat calls to the instant agent, on `connections` kept-alive connections at once;
    every answer must be a 200."""
    body = chat_body("instant")
    failures: list[BaseException] = []

    def caller(count: int) -> None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(count):
                connection.request("POST", CHAT_PATH, body=body, headers=AUTH)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200:
                    raise RuntimeError(f"answered {response.status}: {answer[:200]!r}")
            connection.close()
        except Exception as error:  # reported after the join
            failures.append(error)

    threads = [threading.Thread(target=caller, args=(calls // connections,))
               for _ in range(connections)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"a call failed: {failures[0]!r}")


def served_per_request(side: str, requests: int, connections: int) -> float:
    """The difference between a run that answers `requests` calls after the warm-up and one
    that stays idle as long instead: start-up, warm-up and the work a served process does by
    the clock (uvicorn's timers, ~0.2M instructions a second under valgrind) cancel out."""
    with (
        tempfile.TemporaryDirectory(prefix="gateway-served-") as workdir,
        Stack(Path(workdir)) as stack,
    ):
        stub = stack.start_stub()
        stack.setup_gateway_db(stub)
        busy, took = _served_instructions(side, stack, stub.base, requests, connections)
        idle, _ = _served_instructions(side, stack, stub.base, 0, connections, idle_s=took)
    return (busy - idle) / requests


def served_main(requests: int, connections: int) -> None:
    if requests % connections:
        raise SystemExit("--requests must be a multiple of --connections")
    started = time.monotonic()
    gateway = served_per_request("gateway", requests, connections)
    reference = served_per_request("reference", requests, connections)
    print(
        f"served, {connections} connection(s): instructions per proxied call: gateway "
        f"{gateway:,.0f}, FastAPI + aiohttp reference {reference:,.0f}; gateway / reference = "
        f"{gateway / reference:.4f} ({time.monotonic() - started:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="instant")
    parser.add_argument("--requests", type=int, default=1600, help="a multiple of 16")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-arg", action="append", default=[], metavar="ARG")
    parser.add_argument("--served", action="store_true", help="served processes, see above")
    parser.add_argument("--connections", type=int, default=1, help="with --served")
    args = parser.parse_args()
    if args.served:
        served_main(args.requests, args.connections)
        return
    side_b = dict(item.split("=", 1) for item in args.env)
    a = per_request(args.scenario, args.requests, {}, [], args.concurrency)
    b = per_request(args.scenario, args.requests, side_b, args.b_arg, args.concurrency)
    shown = " ".join([*args.env, *args.b_arg])
    print(
        f"{args.scenario}, {args.concurrency} at a time: instructions per request {a:,.0f} (A) and {b:,.0f} (B: {shown}); "
        f"B / A = {b / a:.4f}"
    )


if __name__ == "__main__":
    main()
