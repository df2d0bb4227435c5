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
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.stack import ROOT

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="instant")
    parser.add_argument("--requests", type=int, default=1600, help="a multiple of 16")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-arg", action="append", default=[], metavar="ARG")
    args = parser.parse_args()
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
