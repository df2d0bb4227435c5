"""Memory of slow streams: `python -m bench.streams [--streams 500] [--repeat 1]`.

Issue 17: N streamed replies at once through one gateway worker, each an event every 100 ms for
10 s (the asyncio stub's `/stream/100/100`, agent `stream` of bench/gateway_setup.py), every
caller reading its events as they come. Prints, per round, whether every stream got its 100
events and no error event, the gateway's RSS idle (after a warm-up), at its peak (sampled every
100 ms) and once the streams are over, its CPU per relayed event, and the slowest caller's time
to its first event; then the medians, against the target: a peak RSS of at most
PEAK_RSS_TARGET_MB. The gateway runs as the container runs it (deploy/with-allocator.sh), pinned
to core 0; the stub and the callers share core 1.
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run import _PeakRss, _settled_rss
from bench.scenarios import AUTH, CHAT_PATH, chat_body, probe
from bench.stack import LOAD_CPU, Server, Stack

EVENTS = 100
EVENT_GAP_S = 0.1
PEAK_RSS_TARGET_MB = 150.0  # as for 1,000 calls in flight (bench/README.md)


@dataclass(frozen=True, slots=True)
class StreamResult:
    status: str
    events: int
    first_event_s: float
    errors: int


async def _one(port: int, raw: bytes) -> StreamResult:
    started = time.monotonic()
    first = 0.0
    try:
        async with asyncio.timeout(EVENTS * EVENT_GAP_S + 30):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1].decode()
                body = b""
                while not body.endswith(b"0\r\n\r\n"):  # chunked: the last chunk
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    if not first:
                        first = time.monotonic() - started
                    body += chunk
            finally:
                writer.close()
    except Exception as exc:
        return StreamResult(f"error: {type(exc).__name__}", 0, 0.0, 0)
    return StreamResult(status, body.count(b"data: {"), first, body.count(b"event: error"))


async def _all(port: int, count: int) -> list[StreamResult]:
    body = chat_body("stream")
    head = [
        f"POST {CHAT_PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        "Accept: text/event-stream",
        "Connection: close",
        *(f"{k}: {v}" for k, v in AUTH.items()),
    ]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    return await asyncio.gather(*(_one(port, raw) for _ in range(count)))


def round_(stack: Stack, count: int) -> dict[str, float]:
    gateway: Server = stack.start_python(
        "gateway (streams)", "gateway_project.asgi:application", stack.gateway_env()
    )
    gateway_allocator = gateway.allocator()
    try:
        for _ in range(20):  # warm up a call's code paths before taking the idle size
            probe(gateway.base + CHAT_PATH, chat_body("instant"), AUTH)
        asyncio.run(_all(gateway.port, 5))  # and a stream's
        idle = _settled_rss(gateway)
        cpu_before = gateway.cpu_s()
        started = time.monotonic()
        with _PeakRss(gateway) as peak:
            results = asyncio.run(_all(gateway.port, count))
        seconds = time.monotonic() - started
        cpu = gateway.cpu_s() - cpu_before
        after = _settled_rss(gateway)
    finally:
        stack.stop(gateway)
    whole = sum(r.status == "200" and r.events == EVENTS and not r.errors for r in results)
    events = sum(r.events for r in results)
    row = {
        "whole streams": whole,
        "idle RSS (MB)": idle,
        "peak RSS (MB)": peak.value,
        "after RSS (MB)": after,
        "peak - idle per stream (KB)": (peak.value - idle) * 1024 / count,
        "CPU per event (µs)": cpu / max(events, 1) * 1e6,
        "slowest first event (ms)": max(r.first_event_s for r in results) * 1000,
        "seconds": seconds,
    }
    failures = {r.status for r in results if r.status != "200"}
    print(
        f"  {gateway_allocator}: {whole}/{count} streams whole ({events} events{f', {failures}' if failures else ''})"
        f" in {seconds:.1f} s; RSS idle {idle:.1f} MB, peak {peak.value:.1f} MB, after "
        f"{after:.1f} MB; {row['CPU per event (µs)']:.0f} µs CPU per event; slowest first "
        f"event {row['slowest first event (ms)']:.0f} ms",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CPU})
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-streams-"))
    print(f"work dir: {workdir}", flush=True)
    rows = []
    with Stack(workdir) as stack:
        stub = stack.start_asyncio_stub()
        stack.setup_gateway_db(stub)
        for n in range(args.repeat):
            print(f"round {n + 1}/{args.repeat}: {args.streams} streams at once", flush=True)
            rows.append(round_(stack, args.streams))
    print(f"\n| {args.streams} streams at once, 1 worker | median | rounds |\n|---|---:|---|")
    for name in rows[0]:
        values = [row[name] for row in rows]
        print(
            f"| {name} | {statistics.median(values):,.1f} | "
            f"{', '.join(f'{v:,.1f}' for v in values)} |"
        )
    peak = statistics.median(row["peak RSS (MB)"] for row in rows)
    whole = min(row["whole streams"] for row in rows) == args.streams
    met = whole and peak <= PEAK_RSS_TARGET_MB
    print(
        f"\ntarget: every stream whole, peak RSS <= {PEAK_RSS_TARGET_MB:g} MB: "
        f"{'met' if met else 'NOT MET'} ({peak:.1f} MB)"
    )


if __name__ == "__main__":
    main()
