"""py-spy profiles of the gateway under load, summarised by where the time goes."""

import subprocess
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bench.scenarios import AUTH, CHAT_PATH, chat_body
from bench.stack import PYTHON
from bench.wrk import lua_script, run_wrk

if TYPE_CHECKING:
    from bench.run import Bench
    from bench.stack import Server

# The top-level package of a frame's file -> the bucket its self time is counted in.
BUCKETS = {
    "httpcore": "httpcore",
    "anyio": "anyio",
    "h11": "h11",
    "aiohttp": "aiohttp",
    "httpx": "httpx",
    "ninja": "django-ninja",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "django": "django",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus_client",
    "logging": "logging",
    "pybreaker": "pybreaker",
    "asyncio": "asyncio",
    "orjson": "orjson",
    "yarl": "yarl",
    "multidict": "multidict",
    **{
        room: f"gateway: {room}/"
        for room in (
            "gateway_project",
            "edge",
            "chat",
            "health",
            "fleet",
            "runtime",
            "access",
            "agents",
            "observability",
        )
    },
}


def bucket_of(frame: str) -> str:
    """`func (pkg/module.py:12)` -> the bucket of `pkg`."""
    path = frame.rpartition("(")[2]
    top = path.split("/", 1)[0] if "/" in path else path.split(".py", 1)[0]
    return BUCKETS.get(top, "other: " + top)


def summarise(collapsed: Path, top: int = 12) -> str:
    """Self time per bucket and the hottest leaf functions, from py-spy's raw output."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        leaf = stack.split(";")[-1]
        total += count
        buckets[bucket_of(leaf)] += count
        leaves[leaf] += count
    lines = [f"{collapsed.name}: {total} samples; self time by package:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in buckets.most_common()]
    lines.append("  hottest functions (self):")
    lines += [f"  {100 * n / total:5.1f}%  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(lines)


def record(bench: "Bench", gateway: "Server", stub: "Server") -> None:
    for name, body, connections in (
        ("instant16", chat_body("instant"), 16),
        ("delay50ms64", chat_body("delay50ms"), 64),
        ("validation400-16", chat_body("instant", message=" "), 16),
    ):
        out = bench.stack.workdir / f"profile-{name}.txt"
        script = lua_script(bench.stack.workdir / f"profile-{name}.lua", body, AUTH)
        spy = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--duration",
                str(int(bench.args.duration)),
                "--output",
                str(out),
                "--pid",
                str(gateway.proc.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        run_wrk(
            gateway.base + CHAT_PATH,
            script,
            connections=connections,
            duration_s=bench.args.duration,
            cpu=1,
        )
        spy.wait(timeout=60)
        print(summarise(out), flush=True)
