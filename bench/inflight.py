"""N calls in flight at once, each on its own connection; counts the answers.

wrk cannot say whether every one of 1,000 slow calls was answered (it drops the ones in flight
when its time is up), so this client sends exactly N requests together and waits for all of them.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InflightResult:
    sent: int
    outcomes: dict[str, int]  # "200", "200 fallback=<reason>", "503", "error: ..."
    seconds: float

    @property
    def all_answered(self) -> bool:
        return self.outcomes.get("200", 0) == self.sent


async def _one(host: str, port: int, raw: bytes, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = lines[0].split(" ")[1]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                fallback = headers.get("x-gateway-fallback")
                return f"{status} fallback={fallback}" if fallback else status
            finally:
                writer.close()
    except Exception as exc:
        return f"error: {type(exc).__name__}"


async def _all(host: str, port: int, raw: bytes, count: int, timeout_s: float) -> InflightResult:
    started = time.monotonic()
    results = await asyncio.gather(*(_one(host, port, raw, timeout_s) for _ in range(count)))
    return InflightResult(
        sent=count, outcomes=dict(Counter(results)), seconds=time.monotonic() - started
    )


def run_inflight(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    count: int,
    timeout_s: float,
) -> InflightResult:
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    return asyncio.run(_all(host, port, raw, count, timeout_s))
